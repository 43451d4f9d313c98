// The X-ARES suite: shards -> crops -> cached features -> the task's probe -> weighted average.
#include "losatok/eval/xares_suite.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <memory>
#include <set>

#include "losatok/audio/audio_io.h"
#include "losatok/core/error.h"
#include "losatok/core/logging.h"
#include "losatok/data/webdataset.h"
#include "losatok/data/wordpiece.h"
#include "losatok/eval/xares_protocol.h"
#include "losatok/eval/xares_tasks.h"

namespace fs = std::filesystem;

namespace losatok::eval {

std::vector<std::vector<float>> xares_crops(const std::vector<float>& wave, int64_t crop) {
  if (crop <= 0) return {wave};
  const auto n = static_cast<int64_t>(wave.size());
  std::vector<std::vector<float>> out;
  for (int64_t i = 0; i + crop <= n; i += crop) out.emplace_back(wave.begin() + i, wave.begin() + i + crop);
  if (out.empty()) {
    out.emplace_back(wave);
    out.back().resize(static_cast<std::size_t>(crop), 0.0f);
  }
  return out;
}

torch::Tensor xares_frame_targets(const std::vector<double>& onsets, const std::vector<double>& offsets,
                                  const std::vector<int64_t>& labels, int64_t classes, double hop_seconds,
                                  double span_seconds) {
  auto frames = [&](double s) { return static_cast<int64_t>(std::ceil(s / hop_seconds)); };
  double span = span_seconds;
  if (span <= 0)
    for (const double e : offsets) span = std::max(span, e);
  const int64_t t = frames(span);
  torch::Tensor y = torch::zeros({t, classes}, torch::kFloat32);
  for (std::size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] < 0 || labels[i] >= classes) continue;
    const int64_t a = std::clamp<int64_t>(frames(onsets[i]), 0, t),
                  b = std::clamp<int64_t>(frames(offsets[i]), 0, t);
    if (b > a) y.narrow(0, a, b - a).select(1, labels[i]).fill_(1.0f);
  }
  return y;
}

namespace {

bool pooled_kind(XaresKind k) {
  return k == XaresKind::clip || k == XaresKind::multilabel || k == XaresKind::contrastive;
}

// One split or fold: per sample its target and, per source tensor, its crops' mean features
// (crops, D) for clip-level kinds or its frames (T, D) for frame-level kinds.
struct SplitFeatures {
  std::vector<XaresTarget> targets;
  std::vector<std::string> keys;
  std::map<std::string, std::vector<torch::Tensor>> features;
  int64_t encoded = 0, cached = 0;
  double audio_seconds = 0;
};

// Reads the shards of one split, encoding what the cache lacks.
class SplitReader {
 public:
  SplitReader(const XaresTask& task, const XaresOptions& o, const XaresEncoder& enc,
              const std::string& cache_dir)
      : task_(task), o_(o), enc_(enc), data_root_(o.data_root) {
    // One cache per source tensor, so probing another set of representations later reuses
    // what is there.
    for (const auto& src : enc.sources) {
      const std::string dir = (fs::path(cache_dir) / src).string();
      fs::create_directories(dir);
      data::CacheProducer p = enc.producer;
      p.what += ":" + src;
      if (fs::exists(fs::path(dir) / "index.json"))
        cache_[src] = std::make_unique<data::FeatureCache>(dir, p);
      writer_[src] = std::make_unique<data::FeatureCacheWriter>(dir, p);
    }
  }

  SplitFeatures read(const std::string& split) {
    SplitFeatures out;
    const int64_t crop = task_.crop_seconds > 0
                             ? static_cast<int64_t>(std::llround(task_.crop_seconds * enc_.sample_rate))
                             : 0;
    int64_t n = 0;
    for (const auto& shard : task_.shards(data_root_, split)) {
      data::WdsReader reader(shard);
      data::WdsSample s;
      const std::string base = fs::path(shard).filename().string();
      while ((o_.max_clips <= 0 || n < o_.max_clips) && reader.next(s)) {
        const std::string where = task_.name + "/" + base + ": " + s.key;
        const auto json = s.files.find("json");
        if (json == s.files.end()) throw Error(where + ": the sample has no .json member");
        out.targets.push_back(task_.target(json->second, where));
        out.keys.push_back(split + "/" + base + "/" + s.key);
        for (const auto& src : enc_.sources) out.features[src].emplace_back();
        ++n;
        const std::string& key = out.keys.back();
        if (std::all_of(enc_.sources.begin(), enc_.sources.end(), [&](const std::string& src) {
              const auto c = cache_.find(src);
              return c != cache_.end() && c->second->contains(key);
            })) {
          for (const auto& src : enc_.sources) out.features[src].back() = cache_.at(src)->read(key).at(src);
          ++out.cached;
          continue;
        }
        const std::string ext = data::wds_audio_extension(s);
        if (ext.empty()) throw Error(where + ": the sample has no audio member (flac, mp3, wav, ogg, ...)");
        const audio::AudioBuffer buf = audio::decode_audio(s.files.at(ext), where + "." + ext);
        std::vector<float> mono = audio::downmix(buf);
        if (buf.sample_rate != enc_.sample_rate)
          mono = audio::resample(mono, buf.sample_rate, enc_.sample_rate, o_.resample_quality);
        out.audio_seconds += static_cast<double>(mono.size()) / enc_.sample_rate;
        Pending p{out.keys.size() - 1, key, xares_crops(mono, crop)};
        pending_crops_ += p.crops.size();
        pending_.push_back(std::move(p));
        if (pending_crops_ >= static_cast<std::size_t>(std::max(1, o_.encode_batch))) flush(out);
      }
      if (o_.max_clips > 0 && n >= o_.max_clips) break;
    }
    flush(out);
    for (auto& [_, w] : writer_) w->flush();
    if (out.targets.empty())
      throw Error(task_.name + ": no samples in its '" + task_.shard_pattern(split) + "' shards");
    return out;
  }

 private:
  struct Pending {
    std::size_t index;
    std::string key;
    std::vector<std::vector<float>> crops;
  };

  // Encodes the pending samples' crops (windows of encode_seconds for long ones) and stores
  // each sample's features in `out` and the cache.
  void flush(SplitFeatures& out) {
    if (pending_.empty()) return;
    const auto window = static_cast<int64_t>(std::max(1.0, o_.encode_seconds) * enc_.sample_rate);
    std::vector<std::vector<float>> pieces;
    std::vector<std::vector<std::size_t>> piece_of;  // per pending sample, per crop: its first piece
    std::vector<std::vector<std::size_t>> piece_count;
    for (const auto& p : pending_) {
      piece_of.emplace_back();
      piece_count.emplace_back();
      for (const auto& c : p.crops) {
        piece_of.back().push_back(pieces.size());
        const auto len = static_cast<int64_t>(c.size());
        std::size_t k = 0;
        for (int64_t a = 0; a < len; a += window, ++k)
          pieces.emplace_back(c.begin() + a, c.begin() + std::min(len, a + window));
        piece_count.back().push_back(k);
      }
    }
    std::vector<std::map<std::string, torch::Tensor>> encoded;
    for (std::size_t a = 0; a < pieces.size(); a += std::max(1, o_.encode_batch)) {
      const std::vector<std::vector<float>> batch(
          pieces.begin() + a, pieces.begin() + std::min(pieces.size(), a + std::max(1, o_.encode_batch)));
      auto e = enc_.encode(batch);
      for (auto& m : e) encoded.push_back(std::move(m));
    }
    for (std::size_t i = 0; i < pending_.size(); ++i) {
      const Pending& p = pending_[i];
      std::map<std::string, torch::Tensor> stored;
      for (const auto& src : enc_.sources) {
        std::vector<torch::Tensor> per_crop;
        for (std::size_t c = 0; c < p.crops.size(); ++c) {
          std::vector<torch::Tensor> parts;
          for (std::size_t k = 0; k < piece_count[i][c]; ++k) {
            const auto it = encoded[piece_of[i][c] + k].find(src);
            if (it == encoded[piece_of[i][c] + k].end()) throw Error("the encoder computes no " + src);
            if (it->second.size(0) > 0) parts.push_back(it->second.to(torch::kFloat32));
          }
          if (parts.empty()) throw Error(p.key + ": the clip is shorter than one frame");
          const torch::Tensor frames = torch::cat(parts);
          per_crop.push_back(pooled_kind(task_.kind) ? frames.mean(0) : frames);
        }
        stored[src] = pooled_kind(task_.kind) ? torch::stack(per_crop) : per_crop.front();
        out.features[src][p.index] = stored[src];
        if (!writer_.at(src)->contains(p.key)) writer_.at(src)->add(p.key, {{src, stored[src]}});
      }
      ++out.encoded;
    }
    pending_.clear();
    pending_crops_ = 0;
  }

  const XaresTask& task_;
  const XaresOptions& o_;
  const XaresEncoder& enc_;
  std::string data_root_;
  std::map<std::string, std::unique_ptr<data::FeatureCache>> cache_;         // source -> its cache
  std::map<std::string, std::unique_ptr<data::FeatureCacheWriter>> writer_;  // source -> its writer
  std::vector<Pending> pending_;
  std::size_t pending_crops_ = 0;
};

// The probe's sets, built from split features for one representation.
struct Rows {
  torch::Tensor x;                    // (N, D) clip kinds: one row per crop (per caption)
  std::vector<XaresTarget> target;    // per row
  std::vector<torch::Tensor> frames;  // frame / asr kinds: per sample (T, D)
  std::vector<int64_t> caps_per_audio;
};

Rows rows_of(const SplitFeatures& f, const XaresRepresentation& r, XaresKind kind) {
  Rows out;
  const auto& feats = f.features.at(r.source);
  std::vector<torch::Tensor> x;
  for (std::size_t i = 0; i < f.targets.size(); ++i) {
    const torch::Tensor mapped = r.map(feats[i]);
    if (!pooled_kind(kind)) {
      out.frames.push_back(mapped);
      out.target.push_back(f.targets[i]);
      continue;
    }
    for (int64_t c = 0; c < mapped.size(0); ++c) {
      if (kind == XaresKind::contrastive) {
        // X-ARES' Clotho merge: one row per caption, the audio repeated.
        for (const auto& caption : f.targets[i].captions) {
          XaresTarget t;
          t.captions = {caption};
          x.push_back(mapped[c]);
          out.target.push_back(std::move(t));
        }
        out.caps_per_audio.push_back(static_cast<int64_t>(f.targets[i].captions.size()));
      } else {
        x.push_back(mapped[c]);
        out.target.push_back(f.targets[i]);
      }
    }
  }
  if (!x.empty()) out.x = torch::stack(x);
  return out;
}

// The training side of a k-fold split (run_k_fold finds it by argument-dependent lookup).
Rows concat_sets(const std::vector<Rows>& parts) {
  Rows out;
  std::vector<torch::Tensor> x;
  for (const Rows& p : parts) {
    if (p.x.defined()) x.push_back(p.x);
    out.target.insert(out.target.end(), p.target.begin(), p.target.end());
    out.frames.insert(out.frames.end(), p.frames.begin(), p.frames.end());
    out.caps_per_audio.insert(out.caps_per_audio.end(), p.caps_per_audio.begin(), p.caps_per_audio.end());
  }
  if (!x.empty()) out.x = torch::cat(x);
  return out;
}

// The representation's width.
int64_t width(const Rows& r) {
  if (r.x.defined()) return r.x.size(1);
  return r.frames.empty() ? 0 : r.frames.front().size(1);
}

LabelledSet labelled(const Rows& r) {
  std::vector<int64_t> y;
  for (const auto& t : r.target) y.push_back(t.label);
  return {r.x, torch::tensor(y, torch::kInt64)};
}

MultiLabelSet multilabel(const Rows& r, int64_t classes) {
  torch::Tensor y = torch::zeros({static_cast<int64_t>(r.target.size()), classes}, torch::kFloat32);
  for (std::size_t i = 0; i < r.target.size(); ++i)
    for (const int64_t l : r.target[i].labels)
      if (l >= 0 && l < classes) y[static_cast<int64_t>(i)][l] = 1.0f;
  return {r.x, y};
}

FrameSet frame_set(const Rows& r, const XaresTask& task, double hop_seconds) {
  FrameSet s;
  for (std::size_t i = 0; i < r.frames.size(); ++i) {
    std::vector<double> on, off;
    std::vector<int64_t> labels;
    for (const auto& e : r.target[i].events) {
      on.push_back(e.onset);
      off.push_back(e.offset);
      labels.push_back(e.label);
    }
    s.x.push_back(r.frames[i]);
    s.y.push_back(
        xares_frame_targets(on, off, labels, task.output_dim, hop_seconds, task.frame_label_seconds));
  }
  return s;
}

CaptionSet caption_set(const Rows& r, const std::string& where) {
  CaptionSet s;
  s.x = r.x;
  for (const auto& t : r.target) s.captions.push_back(t.captions.front());
  s.num_caps = r.caps_per_audio.empty() ? 1 : r.caps_per_audio.front();
  for (const int64_t c : r.caps_per_audio)
    if (c != s.num_caps)
      throw Error(where + ": clips have " + std::to_string(s.num_caps) + " and " + std::to_string(c) +
                  " captions; retrieval scoring needs the same number per clip");
  return s;
}

AsrSet asr_set(const Rows& r) {
  AsrSet s;
  s.x = r.frames;
  for (const auto& t : r.target) s.text.push_back(t.transcript);
  return s;
}

double weighted(const std::vector<std::pair<double, int64_t>>& v) {
  std::vector<std::pair<double, double>> w;
  for (const auto& [s, n] : v)
    if (!std::isnan(s)) w.emplace_back(s, static_cast<double>(n));
  return w.empty() ? kNotScored : weighted_average(w);
}

// Probes one (train, valid, test) triple; score, kNN, valid.
struct FoldScore {
  double test = kNotScored, knn = kNotScored, valid = kNotScored;
  std::vector<std::string> hypotheses, references;
};

FoldScore probe_fold(const XaresTask& task, const XaresOptions& o, const ProbeConfig& pc, const Rows& tr,
                     const Rows& va, const Rows& te, double hop_seconds, const data::BertWordPiece* words,
                     const std::string& adapter_path) {
  FoldScore f;
  switch (task.kind) {
    case XaresKind::clip: {
      const ProbeResult r = run_probe(labelled(tr), labelled(va), labelled(te), task.output_dim, pc);
      f.test = r.linear_accuracy;
      f.valid = r.valid_accuracy;
      if (task.knn) f.knn = r.knn_accuracy;
      break;
    }
    case XaresKind::multilabel: {
      const TaskScore s =
          run_multilabel_probe(multilabel(tr, task.output_dim), multilabel(va, task.output_dim),
                               multilabel(te, task.output_dim), task.output_dim, pc);
      f.test = s.test;
      f.valid = s.valid;
      break;
    }
    case XaresKind::frame: {
      const auto pool = static_cast<int64_t>(std::ceil(task.segment_seconds / hop_seconds));
      const TaskScore s = run_frame_probe(frame_set(tr, task, hop_seconds), frame_set(va, task, hop_seconds),
                                          frame_set(te, task, hop_seconds), task.output_dim, task.pos_weight,
                                          pool, task.metric == "segmentf1_micro", pc);
      f.test = s.test;
      f.valid = s.valid;
      break;
    }
    case XaresKind::contrastive: {
      const TaskScore s =
          run_retrieval_probe(caption_set(tr, task.name + " train"), caption_set(va, task.name + " valid"),
                              caption_set(te, task.name + " test"), *words, o.retrieval_hidden, pc);
      f.test = s.test;
      f.valid = s.valid;
      break;
    }
    case XaresKind::asr: {
      AsrConfig c = o.asr;
      c.probe = pc;
      AsrAdapter adapter{nullptr};
      const AsrResult r =
          run_asr_probe(asr_set(tr), asr_set(va), asr_set(te), *o.llm, *o.llm_tokenizer, c, &adapter);
      f.test = r.test;
      f.valid = r.valid;
      f.hypotheses = r.hypotheses;
      f.references = r.references;
      if (!adapter_path.empty()) save_asr_adapter(*adapter, adapter_path);
      break;
    }
  }
  return f;
}

std::vector<std::string> caption_corpus(const std::vector<const SplitFeatures*>& train) {
  std::vector<std::string> out;
  for (const SplitFeatures* f : train)
    for (const auto& t : f->targets) out.insert(out.end(), t.captions.begin(), t.captions.end());
  return out;
}

}  // namespace

std::vector<XaresSuiteResult> run_xares_suite(const XaresOptions& o, const XaresEncoder& encoder,
                                              const std::vector<XaresRepresentation>& representations) {
  if (representations.empty()) throw Error("xares: no representation to probe");
  if (!fs::is_directory(o.data_root))
    throw Error("xares: the data root '" + o.data_root + "' is not a folder");
  std::vector<const XaresTask*> tasks;
  if (o.tasks.empty()) {
    for (const auto& name : xares_table2_tasks())
      if (fs::is_directory(fs::path(o.data_root) / name)) tasks.push_back(&xares_task(name));
    if (tasks.empty())
      throw Error("xares: none of Table 2's task folders is under '" + o.data_root +
                  "' (expected folders named as X-ARES' tasks, e.g. esc50, gtzan_genre)");
  } else {
    for (const auto& t : o.tasks) tasks.push_back(&xares_task(t));
  }
  const double hop_seconds = encoder.hop_ms / 1000.0;

  std::vector<XaresSuiteResult> results(representations.size());
  for (std::size_t r = 0; r < representations.size(); ++r)
    results[r].representation = representations[r].name;

  for (const XaresTask* task : tasks) {
    const std::string dir = (fs::path(o.data_root) / task->name).string();
    std::vector<XaresTaskResult> per_rep(representations.size());
    for (auto& t : per_rep) {
      t.task = task->name;
      t.formal_name = task->formal_name;
      t.column = task->column;
      t.kind = xares_kind_name(task->kind);
      t.metric = task->metric;
      t.eval_weight = task->eval_weight;
    }
    auto skip_all = [&](const std::string& why) {
      spdlog::warn("xares: {} skipped: {}", task->name, why);
      for (std::size_t r = 0; r < per_rep.size(); ++r) {
        per_rep[r].skipped = why;
        results[r].tasks.push_back(per_rep[r]);
      }
    };
    if (!fs::is_directory(dir)) {
      skip_all("no folder '" + dir + "'");
      continue;
    }
    if (task->kind == XaresKind::asr && (!o.llm || !o.llm_tokenizer)) {
      skip_all("the ASR task needs a decoder LLM (--qwen2 DIR, Qwen2.5-0.5B as X-ARES uses)");
      continue;
    }
    ProbeConfig pc = o.probe;
    pc.epochs = o.epochs > 0 ? o.epochs : task->epochs;
    pc.batch_size = o.batch_size > 0 ? o.batch_size : task->batch_size;
    pc.lr = o.lr > 0 ? o.lr : task->lr;

    // Encode (or read from the cache) every split / fold once.
    const auto t0 = std::chrono::steady_clock::now();
    SplitReader reader(*task, o, encoder, (fs::path(o.cache_root) / task->name).string());
    std::map<std::string, SplitFeatures> splits;
    for (const auto& s : task->splits()) splits.emplace(s, reader.read(s));
    int64_t encoded = 0, cached = 0;
    double seconds_audio = 0;
    for (const auto& [_, f] : splits) {
      encoded += f.encoded;
      cached += f.cached;
      seconds_audio += f.audio_seconds;
    }
    spdlog::info("xares: {}: {} samples encoded ({:.1f} s of audio), {} from the cache, {:.1f} s", task->name,
                 encoded, seconds_audio, cached,
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());

    std::unique_ptr<data::BertWordPiece> words;
    if (task->kind == XaresKind::contrastive) {
      std::vector<const SplitFeatures*> train;
      if (task->folds.empty())
        train.push_back(&splits.at(task->train_split));
      else
        for (const auto& f : task->folds) train.push_back(&splits.at(f));
      words = std::make_unique<data::BertWordPiece>(
          o.bert_vocab.empty() ? data::BertWordPiece::from_captions(caption_corpus(train))
                               : data::BertWordPiece::from_vocab_file(o.bert_vocab));
    }

    for (std::size_t r = 0; r < representations.size(); ++r) {
      const XaresRepresentation& rep = representations[r];
      XaresTaskResult& out = per_rep[r];
      std::map<std::string, Rows> rows;
      for (const auto& [name, f] : splits) rows.emplace(name, rows_of(f, rep, task->kind));
      const std::string adapter_path =
          task->kind == XaresKind::asr && !o.asr_adapter_dir.empty()
              ? (fs::path(o.asr_adapter_dir) / (task->name + "_" + rep.name + "_adapter.safetensors"))
                    .string()
              : std::string();
      try {
        if (task->folds.empty()) {
          const Rows &tr = rows.at(task->train_split), &va = rows.at(task->valid_split),
                     &te = rows.at(task->test_split);
          const FoldScore f = probe_fold(*task, o, pc, tr, va, te, hop_seconds, words.get(), adapter_path);
          out.score = f.test;
          out.knn = f.knn;
          out.valid = f.valid;
          out.hypotheses = f.hypotheses;
          out.references = f.references;
          out.train = static_cast<int64_t>(tr.target.size());
          out.valid_size = static_cast<int64_t>(va.target.size());
          out.test = static_cast<int64_t>(te.target.size());
        } else {
          // X-ARES' k-fold: train on the other folds, the held-out fold is validation and test.
          std::vector<Rows> folds;
          for (const auto& k : task->folds) folds.push_back(rows.at(k));
          std::vector<double> knn, valid;
          const KFoldScore ks = run_k_fold<Rows>(folds, [&](const Rows& tr, const Rows& va, const Rows& te) {
            const FoldScore f = probe_fold(*task, o, pc, tr, va, te, hop_seconds, words.get(), adapter_path);
            if (!std::isnan(f.knn)) knn.push_back(f.knn);
            valid.push_back(f.valid);
            if (out.train == 0) {
              out.train = static_cast<int64_t>(tr.target.size());
              out.valid_size = out.test = static_cast<int64_t>(te.target.size());
            }
            return f.test;
          });
          auto mean = [](const std::vector<double>& v) {
            double sum = 0;
            for (const double x : v) sum += x;
            return v.empty() ? kNotScored : sum / static_cast<double>(v.size());
          };
          out.fold_scores = ks.folds;
          out.fold_knn = knn;
          out.score = ks.mean;
          out.knn = mean(knn);
          out.valid = mean(valid);
        }
      } catch (const Error& e) {
        out.skipped = e.what();
        spdlog::warn("xares: {} / {}: {}", task->name, rep.name, e.what());
      }
      if (results[r].dim == 0) results[r].dim = width(rows.begin()->second);
      spdlog::info("xares: {} / {}: {} {}{}", task->name, rep.name, task->metric,
                   std::isnan(out.score) ? std::string("n/a") : fmt::format("{:.4f}", out.score),
                   std::isnan(out.knn) ? std::string() : fmt::format(", kNN {:.4f}", out.knn));
      results[r].tasks.push_back(out);
    }
  }

  const auto table2 = xares_table2_tasks();
  for (auto& res : results) {
    std::vector<std::pair<double, int64_t>> lin, knn;
    std::set<std::string> scored;
    for (const auto& t : res.tasks) {
      if (std::isnan(t.score)) continue;
      lin.emplace_back(t.score, t.eval_weight);
      res.weight += t.eval_weight;
      scored.insert(t.task);
      if (!std::isnan(t.knn)) knn.emplace_back(t.knn, t.eval_weight);
    }
    res.average = weighted(lin);
    res.knn_average = weighted(knn);
    res.complete =
        std::all_of(table2.begin(), table2.end(), [&](const std::string& n) { return scored.count(n); });
  }
  return results;
}

}  // namespace losatok::eval
