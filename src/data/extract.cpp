// Batched feature extraction into the cache.
#include "losatok/data/extract.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <set>

#include "losatok/audio/audio_io.h"
#include "losatok/core/error.h"
#include "losatok/core/logging.h"
#include "losatok/io/weights.h"
#include "losatok/models/t5.h"

namespace losatok::data {

CacheProducer cache_producer(const std::string& what, models::AudioVAEImpl& vae, const RootConfig& cfg) {
  if (what == "semantic") {
    if (!vae.semantic_encoder)
      throw Error("extract: the " + cfg.model.variant +
                  " tokenizer has no semantic encoder (--what latents)");
    return semantic_cache_producer(*vae.semantic_encoder->encoder, cfg);
  }
  if (what == "latents")
    return {what, hash_tensors(io::module_state(vae)), hash_text(weights_config_yaml(cfg))};
  throw Error("extract: unknown feature kind '" + what + "' (semantic or latents)");
}

CacheProducer text_cache_producer(const models::T5TextEncoder& encoder) {
  return {"condition", encoder.weights_hash(), encoder.config_hash()};
}

ExtractReport extract_text_features(models::T5TextEncoder& encoder, const std::vector<Clip>& clips,
                                    FeatureCacheWriter& writer, int batch_size) {
  if (batch_size <= 0) throw Error("extract: batch size must be positive");
  std::vector<const Clip*> todo;
  std::set<std::string> queued;
  ExtractReport report;
  for (const auto& c : clips) {
    if (writer.contains(c.key))
      ++report.skipped_existing;
    else if (queued.insert(c.key).second)
      todo.push_back(&c);
  }
  for (std::size_t start = 0; start < todo.size(); start += static_cast<std::size_t>(batch_size)) {
    const std::size_t end = std::min(todo.size(), start + static_cast<std::size_t>(batch_size));
    std::vector<std::string> texts;
    for (std::size_t i = start; i < end; ++i) texts.push_back(todo[i]->entry.text);
    const auto e = encoder.encode(texts);
    const torch::Tensor lengths = e.mask.sum(1).cpu();
    for (std::size_t i = start; i < end; ++i) {
      const int64_t row = static_cast<int64_t>(i - start);
      writer.add(todo[i]->key,
                 {{"cond_emb", e.hidden[row].narrow(0, 0, lengths[row].item<int64_t>()).cpu().contiguous()}});
      ++report.written;
    }
  }
  writer.flush();
  return report;
}

CacheProducer semantic_cache_producer(models::DashengEncoderImpl& encoder, const RootConfig& cfg) {
  YAML::Node n;
  n["dasheng"] = config::to_yaml(cfg.frontend.dasheng);
  n["encoder"] = config::to_yaml(cfg.model.encoder);
  return {"semantic", hash_tensors(io::module_state(encoder)), hash_text(config::dump(n))};
}

std::vector<NamedFeatures> encode_waves(models::AudioVAEImpl& vae, const RootConfig& cfg,
                                        const std::vector<std::vector<float>>& waves,
                                        const std::vector<std::string>& wanted, const torch::Device& device) {
  const bool semantic_only = wanted.size() == 1 && wanted[0] == "semantic_emb";
  if (semantic_only && !vae.semantic_encoder)
    throw Error("the " + cfg.model.variant + " tokenizer has no semantic encoder");
  const int64_t spt = vae.samples_per_token();
  for (const auto& w : waves)
    if (static_cast<int64_t>(w.size()) < spt) throw Error("encode: a clip is shorter than one token");
  std::vector<NamedFeatures> result;
  if (waves.empty()) return result;
  torch::NoGradGuard no_grad;
  auto [audio, lengths] = pad_waves(waves);
  audio = audio.to(device);
  NamedFeatures out;
  if (semantic_only) {
    out["semantic_emb"] = vae.semantic_encoder->encoder->forward(audio, lengths);
  } else {
    for (const auto& [name, t] : vae.encode(audio, lengths).named())
      if (std::find(wanted.begin(), wanted.end(), name) != wanted.end()) out[name] = t;
  }
  for (std::size_t i = 0; i < waves.size(); ++i) {
    const int64_t valid = lengths[static_cast<int64_t>(i)].item<int64_t>() / spt;
    NamedFeatures clip;
    for (const auto& [name, t] : out)
      clip[name] = t[static_cast<int64_t>(i)].narrow(0, 0, std::min(valid, t.size(1))).cpu();
    result.push_back(std::move(clip));
  }
  return result;
}

ExtractReport encode_clips(models::AudioVAEImpl& vae, const RootConfig& cfg,
                           const std::vector<const Clip*>& clips, const std::vector<std::string>& wanted,
                           int batch_size, const torch::Device& device,
                           const std::function<void(const Clip&, const NamedFeatures&)>& consume) {
  if (batch_size <= 0) throw Error("encode: batch size must be positive");
  const bool semantic_only = wanted.size() == 1 && wanted[0] == "semantic_emb";
  if (semantic_only && !vae.semantic_encoder)
    throw Error("the " + cfg.model.variant + " tokenizer has no semantic encoder");
  ExtractReport report;
  torch::NoGradGuard no_grad;
  const int sr = cfg.audio.sample_rate;
  const int64_t spt = vae.samples_per_token();
  for (std::size_t start = 0; start < clips.size(); start += batch_size) {
    std::vector<const Clip*> ok;
    std::vector<std::vector<float>> waves;
    for (std::size_t i = start; i < std::min(clips.size(), start + batch_size); ++i) {
      const Clip& c = *clips[i];
      std::string why;
      try {
        std::vector<float> w = audio::load_audio(c.entry.audio, sr, c.entry.offset, c.entry.duration,
                                                 cfg.audio.resample_quality);
        // load_audio refuses empty and non-finite audio with an error naming the file.
        if (static_cast<int64_t>(w.size()) >= spt) {
          ok.push_back(&c);
          waves.push_back(std::move(w));
          continue;
        }
        why = "shorter than one token";
      } catch (const Error& e) {
        why = first_line(e.what());
      }
      record_bad_clip(report.bad, c.key, why, cfg.data.max_bad_files, "encode");
    }
    if (ok.empty()) continue;
    for (const auto& w : waves) report.audio_seconds += static_cast<double>(w.size()) / sr;
    const std::vector<NamedFeatures> features = encode_waves(vae, cfg, waves, wanted, device);
    for (std::size_t i = 0; i < ok.size(); ++i) {
      consume(*ok[i], features[i]);
      ++report.written;
    }
  }
  return report;
}

ExtractReport extract_features(models::AudioVAEImpl& vae, const RootConfig& cfg,
                               const std::vector<Clip>& clips, const std::string& what,
                               FeatureCacheWriter& writer, int batch_size, const torch::Device& device) {
  if (what != "semantic" && what != "latents")
    throw Error("extract: unknown feature kind '" + what + "' (semantic or latents)");
  std::vector<const Clip*> todo;
  std::set<std::string> queued;  // a manifest may list one clip twice
  int64_t existing = 0;
  for (const auto& c : clips) {
    if (writer.contains(c.key))
      ++existing;
    else if (queued.insert(c.key).second)
      todo.push_back(&c);
  }
  ExtractReport report =
      // logvar is absent for unified_1280, which is deterministic.
      encode_clips(vae, cfg, todo,
                   what == "semantic" ? std::vector<std::string>{"semantic_emb"}
                                      : std::vector<std::string>{"mu", "logvar"},
                   batch_size, device, [&](const Clip& c, const NamedFeatures& f) { writer.add(c.key, f); });
  report.skipped_existing = existing;
  writer.flush();
  return report;
}

}  // namespace losatok::data
