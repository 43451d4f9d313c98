// Worker-thread audio loader: deterministic batches, crops, padding, bad-file policy, resume.
#include "losatok/data/loader.h"

#include <torch/torch.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <random>
#include <tuple>

#include "losatok/audio/audio_io.h"
#include "losatok/core/error.h"
#include "losatok/core/logging.h"

namespace losatok::data {

std::vector<Clip> read_sources(const std::vector<DataSource>& sources) {
  std::vector<Clip> clips;
  for (std::size_t s = 0; s < sources.size(); ++s) {
    auto entries = read_manifest(sources[s].manifest);
    if (entries.empty()) throw Error("manifest '" + sources[s].manifest + "': no clips");
    for (auto& e : entries) {
      Clip c;
      c.key = clip_key(e.audio, e.offset, e.duration);
      c.entry = std::move(e);
      c.source = static_cast<int>(s);
      clips.push_back(std::move(c));
    }
  }
  return clips;
}

void record_bad_clip(std::vector<std::string>& bad, const std::string& key, const std::string& why,
                     int max_bad, const std::string& who) {
  bad.push_back(key);
  spdlog::warn("{}: skipping '{}': {} ({} bad so far)", who, key, why, bad.size());
  if (max_bad >= 0 && static_cast<int64_t>(bad.size()) > max_bad)
    throw Error(who + ": " + std::to_string(bad.size()) + " bad clips, more than data.max_bad_files (" +
                std::to_string(max_bad) + "); the first was '" + bad.front() + "'");
}

std::pair<torch::Tensor, torch::Tensor> pad_waves(const std::vector<std::vector<float>>& waves,
                                                  int64_t min_length) {
  int64_t longest = min_length;
  for (const auto& w : waves) longest = std::max<int64_t>(longest, w.size());
  const int64_t b = static_cast<int64_t>(waves.size());
  torch::Tensor audio = torch::zeros({b, longest});
  torch::Tensor lengths = torch::empty({b}, torch::kLong);
  for (int64_t i = 0; i < b; ++i) {
    const int64_t n = waves[i].size();
    audio[i].narrow(0, 0, n).copy_(torch::from_blob(const_cast<float*>(waves[i].data()), {n}));
    lengths[i] = n;
  }
  return {audio, lengths};
}

torch::Tensor Batch::mask() const {
  return torch::arange(audio.size(1)).unsqueeze(0) < lengths.unsqueeze(1);
}

torch::Tensor Batch::feature_mask() const {
  if (features.empty()) throw Error("batch: no cached features to mask");
  return torch::arange(features.begin()->second.size(1)).unsqueeze(0) < feature_lengths.unsqueeze(1);
}

std::string LoaderState::to_json() const {
  return nlohmann::json{{"epoch", epoch}, {"batch", batch}, {"bad_files", bad_files}}.dump();
}

LoaderState LoaderState::from_json(const std::string& text) {
  try {
    const auto j = nlohmann::json::parse(text);
    LoaderState s;
    s.epoch = j.at("epoch").get<int64_t>();
    s.batch = j.at("batch").get<int64_t>();
    s.bad_files = j.at("bad_files").get<std::vector<std::string>>();
    if (s.epoch < 0 || s.batch < 0) throw Error("negative position");
    return s;
  } catch (const nlohmann::json::exception& e) {
    throw Error("data loader state: " + first_line(e.what()));
  }
}

AudioLoader::AudioLoader(const DataConfig& config, const std::vector<DataSource>& sources,
                         const LoaderOptions& options)
    : AudioLoader(
          read_sources(sources),
          [&] {
            std::vector<double> w;
            for (const auto& s : sources) w.push_back(s.weight);
            return w;
          }(),
          config, options) {
  // Sources that name a task (the joint DiT) batch by task.
  bool any_task = false;
  for (const auto& s : sources) any_task = any_task || !s.task.empty();
  if (!any_task) return;
  std::map<std::string, int> ids;
  std::vector<int> groups;
  for (const auto& s : sources)
    groups.push_back(ids.emplace(s.task, static_cast<int>(ids.size())).first->second);
  SamplerOptions so = sampler_options();
  so.source_groups = groups;
  sampler_ = std::make_unique<BatchSampler>(sizes_, weights_, durations_, so);
}

AudioLoader::AudioLoader(std::vector<Clip> clips, std::vector<double> weights, const DataConfig& config,
                         const LoaderOptions& options)
    : clips_(std::move(clips)), config_(config), options_(options) {
  config_.validate();
  sizes_.assign(std::max<std::size_t>(weights.size(), 1), 0);
  weights_ = std::move(weights);
  for (const auto& c : clips_) {
    if (c.source >= static_cast<int>(sizes_.size())) sizes_.resize(c.source + 1, 0);
    ++sizes_[c.source];
    durations_.push_back(c.entry.duration);
  }
  sampler_ = std::make_unique<BatchSampler>(sizes_, weights_, durations_, sampler_options());
}

SamplerOptions AudioLoader::sampler_options() const {
  SamplerOptions so;
  so.seed = options_.seed;
  so.batch_size = config_.batch_size;
  so.shuffle = options_.train && config_.shuffle;
  so.drop_last = options_.train && config_.drop_last;
  so.bucket_batches = config_.bucket_batches;
  so.rank = options_.rank;
  so.world_size = options_.world_size;
  return so;
}

AudioLoader::~AudioLoader() {
  stop();
}

void AudioLoader::start() {
  stopping_ = false;
  for (int i = 0; i < config_.workers; ++i) threads_.emplace_back([this] { work(); });
}

void AudioLoader::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
  threads_.clear();
}

std::vector<int64_t> AudioLoader::batch_ids(int64_t epoch, int64_t index) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = plans_.find(epoch);
  if (it == plans_.end()) {
    it = plans_.emplace(epoch, sampler_->epoch(epoch)).first;
    // Keep the plans the workers may still be reading (they run prefetch_batches ahead).
    while (plans_.size() > static_cast<std::size_t>(config_.prefetch_batches) + 2) {
      auto victim = plans_.begin();
      if (victim->first == epoch) ++victim;
      plans_.erase(victim);
    }
  }
  return it->second.at(index);  // a copy, made under the lock
}

std::vector<float> AudioLoader::read_item(const Clip& clip, uint64_t seed, int64_t* offset, bool* bad,
                                          std::string* why, bool* permanent) {
  const ManifestEntry& e = clip.entry;
  const int sr = options_.sample_rate;
  const int64_t spt = options_.samples_per_token;
  *offset = 0;
  *bad = true;
  *permanent = true;  // until the crop is read: what fails from here on fails for every crop
  try {
    double seconds = e.duration;
    const bool from_cache = options_.features_only && options_.cache;
    if (from_cache) {
      if (!options_.cache->contains(clip.key)) {
        *why = "not in the feature cache " + options_.cache->dir();
        return {};
      }
      seconds = static_cast<double>(options_.cache->clip(clip.key).frames * spt) / sr;
    } else if (seconds < 0) {
      const audio::AudioInfo info = audio::probe_audio(e.audio);
      seconds = static_cast<double>(info.frames) / info.sample_rate - e.offset;
    }
    if (seconds <= 0) {
      *why = "empty";
      return {};
    }
    if (seconds < config_.min_seconds) {
      *why = "shorter than data.min_seconds (" + std::to_string(seconds) + " s)";
      return {};
    }
    const double segment = options_.train ? config_.segment_seconds : 0.0;
    const double want = segment > 0 ? segment : std::min(seconds, config_.max_seconds);
    int64_t want_samples = static_cast<int64_t>(std::floor(want * sr));
    if (segment > 0) want_samples = std::max(spt, want_samples / spt * spt);
    const int64_t available = from_cache ? options_.cache->clip(clip.key).frames * spt
                                         : static_cast<int64_t>(std::floor(seconds * sr));
    if (options_.train && available > want_samples) {
      // A random crop start on the token grid, from this item's own random stream.
      std::mt19937_64 rng(seed);
      const int64_t steps = (available - want_samples) / spt;
      *offset = std::uniform_int_distribution<int64_t>(0, steps)(rng) * spt;
    }
    if (from_cache) {  // the crop's length in samples, no audio
      *bad = false;
      return std::vector<float>(static_cast<std::size_t>(std::min(want_samples, available - *offset)), 0.0f);
    }
    // A failure from here on may depend on the crop (a manifest duration longer than the file).
    *permanent = false;
    // What the clip holds from the crop start (a short clip reads to its end, then is padded);
    // a manifest duration longer than the file is an error of load_audio's.
    const int64_t read_samples = std::min(want_samples, available - *offset);
    std::vector<float> wave =
        audio::load_audio(e.audio, sr, e.offset + static_cast<double>(*offset) / sr,
                          static_cast<double>(read_samples) / sr, options_.resample_quality);
    // load_audio refuses empty and non-finite audio with an error naming the file.
    if (static_cast<int64_t>(wave.size()) > want_samples) wave.resize(want_samples);
    *bad = false;
    return wave;
  } catch (const Error& err) {
    *why = first_line(err.what());
    return {};
  }
}

Batch AudioLoader::build(int64_t global) {
  const int64_t per_epoch = sampler_->batches_per_epoch();
  Batch batch;
  batch.epoch = global / per_epoch;
  batch.index = global % per_epoch;
  const std::vector<int64_t> ids = batch_ids(batch.epoch, batch.index);
  std::vector<std::vector<float>> waves;
  std::vector<std::pair<std::string, std::string>> bad;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    const Clip& clip = clips_[ids[i]];
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (const auto it = known_bad_.find(clip.key); it != known_bad_.end()) {
        bad.emplace_back(clip.key, it->second);
        continue;
      }
    }
    // Keyed by the item's place in the global batch (rank r holds every world_size-th), so a
    // multi-process run crops exactly as one process with the whole batch would.
    const uint64_t global_item = i * static_cast<uint64_t>(options_.world_size) + options_.rank;
    const uint64_t seed = mix_seed(
        {options_.seed, static_cast<uint64_t>(batch.epoch), static_cast<uint64_t>(batch.index), global_item});
    int64_t offset = 0;
    bool is_bad = false, permanent = false;
    std::string why;
    std::vector<float> wave = read_item(clip, seed, &offset, &is_bad, &why, &permanent);
    if (is_bad) {
      // Only crop-independent failures are remembered: skipping a clip must not depend on
      // which worker happened to read it first.
      std::lock_guard<std::mutex> lock(mutex_);
      if (permanent) known_bad_.emplace(clip.key, why);
      bad.emplace_back(clip.key, why);
      continue;
    }
    batch.items.push_back({&clip, offset});
    waves.push_back(std::move(wave));
  }
  // Training batches with a crop length are padded to it, not to their longest clip: every batch
  // has one shape, so losses that average over padded frames weigh each clip alike whichever
  // rank or micro-batch holds it, and a clip's frames never depend on its neighbours (centred
  // STFT windows reflect at the batch's end).
  const int64_t spt = options_.samples_per_token;
  int64_t crop = 0;
  if (options_.train && config_.segment_seconds > 0)
    crop = std::max(
        spt, static_cast<int64_t>(std::floor(config_.segment_seconds * options_.sample_rate)) / spt * spt);
  std::tie(batch.audio, batch.lengths) = pad_waves(waves, crop);
  const int64_t b = batch.size();
  if (options_.cache && b > 0) {
    // Cached features cut to the same crop, on the token grid.
    std::map<std::string, std::vector<torch::Tensor>> parts;
    std::vector<int64_t> tokens;
    for (int64_t i = 0; i < b; ++i) {
      const std::string& key = batch.items[i].clip->key;
      const int64_t frames = options_.cache->clip(key).frames;
      const int64_t start = std::min(batch.items[i].offset / spt, frames);
      const int64_t len =
          std::min<int64_t>(frames - start, (static_cast<int64_t>(waves[i].size()) + spt - 1) / spt);
      tokens.push_back(len);
      for (const auto& [name, t] : options_.cache->read(key)) parts[name].push_back(t.narrow(0, start, len));
    }
    batch.feature_lengths = torch::tensor(tokens, torch::kLong);
    const int64_t t_max = std::max(*std::max_element(tokens.begin(), tokens.end()), (crop + spt - 1) / spt);
    for (auto& [name, list] : parts) {
      if (static_cast<int64_t>(list.size()) != b)
        throw Error("feature cache: tensor '" + name + "' is missing for some clips");
      std::vector<int64_t> shape = list[0].sizes().vec();
      shape[0] = t_max;
      shape.insert(shape.begin(), b);
      torch::Tensor out = torch::zeros(shape, list[0].options());
      for (int64_t i = 0; i < b; ++i) out[i].narrow(0, 0, list[i].size(0)).copy_(list[i]);
      batch.features[name] = out;
    }
  }
  std::lock_guard<std::mutex> lock(mutex_);
  ready_bad_[global] = std::move(bad);
  return batch;
}

void AudioLoader::work() {
  while (true) {
    int64_t global;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [&] { return stopping_ || claimed_ < consumed_ + config_.prefetch_batches; });
      if (stopping_) return;
      global = claimed_++;
    }
    try {
      Batch b = build(global);
      std::lock_guard<std::mutex> lock(mutex_);
      ready_.emplace(global, std::move(b));
    } catch (const std::exception& e) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (worker_error_.empty() || global < error_global_) {
        worker_error_ = "data loader: " + first_line(e.what());
        error_global_ = global;
      }
    }
    cv_.notify_all();
  }
}

Batch AudioLoader::next() {
  while (true) {
    Batch batch;
    std::vector<std::pair<std::string, std::string>> bad;
    if (config_.workers == 0) {
      batch = build(consumed_);
      std::lock_guard<std::mutex> lock(mutex_);
      bad = std::move(ready_bad_[consumed_]);
      ready_bad_.erase(consumed_);
      ++consumed_;
      claimed_ = consumed_;
    } else {
      if (threads_.empty()) start();
      std::unique_lock<std::mutex> lock(mutex_);
      // A failure in a later batch surfaces only when that batch is due.
      cv_.wait(lock, [&] {
        return ready_.count(consumed_) > 0 || (error_global_ >= 0 && error_global_ <= consumed_);
      });
      if (!ready_.count(consumed_)) throw Error(worker_error_);
      batch = std::move(ready_.at(consumed_));
      bad = std::move(ready_bad_[consumed_]);
      ready_.erase(consumed_);
      ready_bad_.erase(consumed_);
      ++consumed_;
      lock.unlock();
      cv_.notify_all();
    }
    // Reported in consumption order, so the list and the log are the same on every run.
    for (const auto& [key, why] : bad) {
      if (reported_.insert(key).second) record_bad_clip(bad_files_, key, why, config_.max_bad_files, "data");
    }
    if (batch.size() > 0) return batch;
  }
}

LoaderState AudioLoader::state() const {
  std::lock_guard<std::mutex> lock(mutex_);
  LoaderState s;
  s.epoch = consumed_ / sampler_->batches_per_epoch();
  s.batch = consumed_ % sampler_->batches_per_epoch();
  s.bad_files = bad_files_;
  return s;
}

void AudioLoader::restore(const LoaderState& state) {
  stop();
  if (state.batch >= sampler_->batches_per_epoch())
    throw Error("data loader state: batch " + std::to_string(state.batch) + " is beyond the epoch's " +
                std::to_string(sampler_->batches_per_epoch()) + " (did the manifests change?)");
  std::lock_guard<std::mutex> lock(mutex_);
  ready_.clear();
  ready_bad_.clear();
  plans_.clear();
  known_bad_.clear();
  error_global_ = -1;
  worker_error_.clear();
  consumed_ = claimed_ = state.epoch * sampler_->batches_per_epoch() + state.batch;
  bad_files_ = state.bad_files;
  reported_ = std::set<std::string>(bad_files_.begin(), bad_files_.end());
  // known_bad_ starts empty: the uninterrupted run re-read nothing it had not found bad itself,
  // and clips already reported are not reported again.
}

}  // namespace losatok::data
