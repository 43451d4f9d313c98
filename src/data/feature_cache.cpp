// Sharded safetensors feature cache with a producer-checked index.
#include "losatok/data/feature_cache.h"

#include <torch/torch.h>

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "losatok/core/error.h"
#include "losatok/core/file_util.h"
#include "losatok/core/logging.h"
#include "losatok/io/safetensors.h"

namespace losatok::data {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kIndex = "index.json";

struct Fnv {
  uint64_t h = 1469598103934665603ull;
  void add(const void* data, std::size_t n) {
    const auto* p = static_cast<const unsigned char*>(data);
    for (std::size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  }
  void add(const std::string& s) { add(s.data(), s.size() + 1); }
  std::string hex() const {
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
    return buf;
  }
};

json producer_json(const CacheProducer& p) {
  return {{"what", p.what}, {"weights_hash", p.weights_hash}, {"config_hash", p.config_hash}};
}

struct IndexFile {
  CacheProducer producer;
  std::vector<std::string> shards;
  std::map<std::string, CachedClip> clips;
};

IndexFile read_index(const std::string& dir) {
  const std::string path = (fs::path(dir) / kIndex).string();
  IndexFile out;
  try {
    const json j = json::parse(read_file(path));
    const json& p = j.at("producer");
    out.producer = {p.at("what").get<std::string>(), p.at("weights_hash").get<std::string>(),
                    p.at("config_hash").get<std::string>()};
    out.shards = j.at("shards").get<std::vector<std::string>>();
    for (const auto& [key, c] : j.at("clips").items()) {
      CachedClip clip{c.at("shard").get<int>(), c.at("frames").get<int64_t>(),
                      c.at("tensors").get<std::vector<std::string>>()};
      if (clip.shard < 0 || clip.shard >= static_cast<int>(out.shards.size()))
        throw Error("clip '" + key + "' names shard " + std::to_string(clip.shard) + " of " +
                    std::to_string(out.shards.size()));
      out.clips.emplace(key, std::move(clip));
    }
  } catch (const json::exception& e) {
    throw Error("feature cache index '" + path + "': " + first_line(e.what()));
  } catch (const Error& e) {
    const std::string msg = e.what();
    if (msg.rfind("feature cache", 0) == 0) throw;
    throw Error("feature cache index '" + path + "': " + msg);
  }
  return out;
}

std::string shard_name(int i) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "shard-%05d.safetensors", i);
  return buf;
}

void check_producer(const std::string& dir, const CacheProducer& found, const CacheProducer& expected) {
  if (!expected.what.empty() && found != expected)
    throw Error("feature cache '" + dir + "' was made by " + found.describe() + ", but this run expects " +
                expected.describe() + " (re-run losatok extract into a new folder)");
}

}  // namespace

std::string CacheProducer::describe() const {
  return what + " features (weights " + weights_hash + ", config " + config_hash + ")";
}

std::string hash_tensors(const std::map<std::string, torch::Tensor>& tensors) {
  Fnv f;
  for (const auto& [name, t0] : tensors) {
    const torch::Tensor t = t0.detach().contiguous().cpu();
    f.add(name);
    f.add(std::string(c10::toString(t.scalar_type())));
    for (auto d : t.sizes()) f.add(&d, sizeof d);
    f.add(t.data_ptr(), t.numel() * t.element_size());
  }
  return f.hex();
}

std::string hash_text(const std::string& text) {
  Fnv f;
  f.add(text);
  return f.hex();
}

std::string clip_key(const std::string& audio, double offset, double duration) {
  if (offset <= 0 && duration < 0) return audio;
  char buf[64];
  std::snprintf(buf, sizeof buf, "@%.3f+%.3f", offset, duration);
  return audio + buf;
}

FeatureCacheWriter::FeatureCacheWriter(const std::string& dir, const CacheProducer& producer,
                                       double shard_megabytes)
    : dir_(dir), producer_(producer), shard_bytes_(static_cast<uint64_t>(shard_megabytes * (1 << 20))) {
  fs::create_directories(dir);
  if (fs::exists(fs::path(dir) / kIndex)) {
    IndexFile index = read_index(dir);
    check_producer(dir, index.producer, producer);
    shards_ = static_cast<int>(index.shards.size());
    clips_ = std::move(index.clips);
    spdlog::info("feature cache {}: resuming after {} clips in {} shards", dir, clips_.size(), shards_);
  }
}

FeatureCacheWriter::~FeatureCacheWriter() {
  try {
    flush();
  } catch (const std::exception& e) {
    spdlog::error("feature cache {}: last shard not written: {}", dir_, first_line(e.what()));
  }
}

void FeatureCacheWriter::add(const std::string& key, const std::map<std::string, torch::Tensor>& tensors) {
  if (contains(key)) throw Error("feature cache '" + dir_ + "': clip '" + key + "' added twice");
  CachedClip clip;
  clip.shard = shards_;
  clip.frames = -1;
  for (const auto& [name, t] : tensors) {
    if (t.dim() < 1) throw Error("feature cache: tensor '" + name + "' of '" + key + "' has no frame axis");
    if (clip.frames >= 0 && t.size(0) != clip.frames)
      throw Error("feature cache: tensors of '" + key + "' disagree on the frame count");
    clip.frames = t.size(0);
    clip.tensors.push_back(name);
    const torch::Tensor c = t.detach().contiguous().cpu();
    pending_bytes_ += c.numel() * c.element_size();
    pending_[key + "/" + name] = c;
  }
  pending_meta_[key] = clip;
  pending_keys_.insert(key);
  if (pending_bytes_ >= shard_bytes_) flush();
}

void FeatureCacheWriter::flush() {
  if (pending_keys_.empty()) return;
  const std::string name = shard_name(shards_);
  io::save_safetensors((fs::path(dir_) / name).string(), pending_, {{"producer", producer_.describe()}});
  ++shards_;
  for (auto& [key, clip] : pending_meta_) clips_[key] = clip;
  pending_.clear();
  pending_meta_.clear();
  pending_keys_.clear();
  pending_bytes_ = 0;
  write_index();
}

void FeatureCacheWriter::write_index() const {
  json clips = json::object();
  for (const auto& [key, c] : clips_)
    clips[key] = {{"shard", c.shard}, {"frames", c.frames}, {"tensors", c.tensors}};
  json shards = json::array();
  for (int i = 0; i < shards_; ++i) shards.push_back(shard_name(i));
  const json j = {
      {"version", 1}, {"producer", producer_json(producer_)}, {"shards", shards}, {"clips", clips}};
  write_file_atomic((fs::path(dir_) / kIndex).string(), j.dump(1));
}

std::vector<std::string> FeatureCache::keys() const {
  std::vector<std::string> out;
  out.reserve(clips_.size());
  for (const auto& [key, clip] : clips_) out.push_back(key);
  return out;
}

FeatureCache::FeatureCache(const std::string& dir, const CacheProducer& expected) : dir_(dir) {
  if (!fs::exists(fs::path(dir) / kIndex))
    throw Error("feature cache '" + dir + "': no " + kIndex + " (make one with losatok extract)");
  IndexFile index = read_index(dir);
  check_producer(dir, index.producer, expected);
  producer_ = index.producer;
  clips_ = std::move(index.clips);
  shard_files_ = std::move(index.shards);
}

FeatureCache::~FeatureCache() = default;

const CachedClip& FeatureCache::clip(const std::string& key) const {
  const auto it = clips_.find(key);
  if (it == clips_.end()) throw Error("feature cache '" + dir_ + "' has no clip '" + key + "'");
  return it->second;
}

std::map<std::string, torch::Tensor> FeatureCache::read(const std::string& key) const {
  const CachedClip& c = clip(key);
  std::shared_ptr<io::SafetensorsFile> file;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    // A bounded set of open shards (least recently used closes first): a large cache must not
    // use up the process's file descriptors, which audio reads share.
    auto it = open_.find(c.shard);
    if (it == open_.end()) {
      if (open_.size() >= kMaxOpenShards) {
        auto oldest = open_.begin();
        for (auto i = open_.begin(); i != open_.end(); ++i)
          if (i->second.second < oldest->second.second) oldest = i;
        open_.erase(oldest);
      }
      const std::string path = (fs::path(dir_) / shard_files_[c.shard]).string();
      it = open_.emplace(c.shard, std::make_pair(std::make_shared<io::SafetensorsFile>(path), uint64_t{0}))
               .first;
    }
    it->second.second = ++use_clock_;
    file = it->second.first;
  }
  std::map<std::string, torch::Tensor> out;
  for (const auto& name : c.tensors) out[name] = file->read(key + "/" + name);
  return out;
}

}  // namespace losatok::data
