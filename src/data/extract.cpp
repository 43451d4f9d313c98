// Batched feature extraction into the cache.
#include "losatok/data/extract.h"

#include <torch/torch.h>

#include <cmath>
#include <set>

#include "losatok/audio/audio_io.h"
#include "losatok/core/error.h"
#include "losatok/core/logging.h"
#include "losatok/io/weights.h"

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

CacheProducer semantic_cache_producer(models::DashengEncoderImpl& encoder, const RootConfig& cfg) {
  YAML::Node n;
  n["dasheng"] = config::to_yaml(cfg.frontend.dasheng);
  n["encoder"] = config::to_yaml(cfg.model.encoder);
  return {"semantic", hash_tensors(io::module_state(encoder)), hash_text(config::dump(n))};
}

ExtractReport extract_features(models::AudioVAEImpl& vae, const RootConfig& cfg,
                               const std::vector<Clip>& clips, const std::string& what,
                               FeatureCacheWriter& writer, int batch_size, const torch::Device& device) {
  if (what != "semantic" && what != "latents")
    throw Error("extract: unknown feature kind '" + what + "' (semantic or latents)");
  if (batch_size <= 0) throw Error("extract: batch size must be positive");
  ExtractReport report;
  torch::NoGradGuard no_grad;
  const int sr = cfg.audio.sample_rate;
  const int64_t spt = vae.samples_per_token();
  std::vector<const Clip*> todo;
  std::set<std::string> queued;  // a manifest may list one clip twice
  for (const auto& c : clips) {
    if (writer.contains(c.key))
      ++report.skipped_existing;
    else if (queued.insert(c.key).second)
      todo.push_back(&c);
  }
  for (std::size_t start = 0; start < todo.size(); start += batch_size) {
    std::vector<const Clip*> ok;
    std::vector<std::vector<float>> waves;
    for (std::size_t i = start; i < std::min(todo.size(), start + batch_size); ++i) {
      const Clip& c = *todo[i];
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
      record_bad_clip(report.bad, c.key, why, cfg.data.max_bad_files, "extract");
    }
    if (ok.empty()) continue;
    auto [audio, lengths] = pad_waves(waves);
    report.audio_seconds += lengths.sum().item<int64_t>() / static_cast<double>(sr);
    audio = audio.to(device);
    std::map<std::string, torch::Tensor> out;
    if (what == "semantic") {
      out["semantic_emb"] = vae.semantic_encoder->encoder->forward(audio, lengths);
    } else {
      const models::VaeFeatures f = vae.encode(audio, lengths);
      out["mu"] = f.mu;
      if (f.logvar.defined()) out["logvar"] = f.logvar;  // unified_1280 is deterministic
    }
    for (std::size_t i = 0; i < ok.size(); ++i) {
      const int64_t valid = lengths[i].item<int64_t>() / spt;
      std::map<std::string, torch::Tensor> clip;
      for (const auto& [name, t] : out) clip[name] = t[i].narrow(0, 0, std::min(valid, t.size(1))).cpu();
      writer.add(ok[i]->key, clip);
      ++report.written;
    }
  }
  writer.flush();
  return report;
}

}  // namespace losatok::data
