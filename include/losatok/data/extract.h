// Filling the feature cache from a model (`losatok extract`), and the producer identity a
// stage compares against when it reads a cache.
#pragma once

#include <string>
#include <vector>

#include "losatok/core/run_config.h"
#include "losatok/data/feature_cache.h"
#include "losatok/data/loader.h"
#include "losatok/models/audio_vae.h"

namespace losatok::data {

// semantic: `semantic_emb` of the frozen encoder (weights and config of the encoder only);
// latents: `mu` and `logvar` of the tokenizer (the whole model).
CacheProducer cache_producer(const std::string& what, models::AudioVAEImpl& vae, const RootConfig& cfg);
// The `semantic` producer of an encoder alone (what the SemBo stage expects of a cache).
CacheProducer semantic_cache_producer(models::DashengEncoderImpl& encoder, const RootConfig& cfg);

struct ExtractReport {
  int64_t written = 0, skipped_existing = 0;
  std::vector<std::string> bad;  // clip keys
  double audio_seconds = 0;
};

// Encodes every clip not yet in `writer`, `batch_size` at a time (zero-padded with lengths),
// on the model's device. Bad clips are skipped and listed; more than `max_bad` (< 0: no
// limit) is an error.
ExtractReport extract_features(models::AudioVAEImpl& vae, const RootConfig& cfg,
                               const std::vector<Clip>& clips, const std::string& what,
                               FeatureCacheWriter& writer, int batch_size, const torch::Device& device);

}  // namespace losatok::data
