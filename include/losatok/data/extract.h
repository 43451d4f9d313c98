// Filling the feature cache from a model (`losatok extract`), and the producer identity a
// stage compares against when it reads a cache.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "losatok/core/run_config.h"
#include "losatok/data/feature_cache.h"
#include "losatok/data/loader.h"
#include "losatok/models/audio_vae.h"

namespace losatok::models {
class T5TextEncoder;
}

namespace losatok::data {

// semantic: `semantic_emb` of the frozen encoder (weights and config of the encoder only);
// latents: `mu` and `logvar` of the tokenizer (the whole model).
CacheProducer cache_producer(const std::string& what, models::AudioVAEImpl& vae, const RootConfig& cfg);
// text: a frozen T5's caption features `cond_emb` (L, d_model) per clip (what the DiT's condition
// cache reads): its weights, config.json, spiece.model and max_tokens.
CacheProducer text_cache_producer(const models::T5TextEncoder& encoder);
// The `semantic` producer of an encoder alone (what the SemBo stage expects of a cache).
CacheProducer semantic_cache_producer(models::DashengEncoderImpl& encoder, const RootConfig& cfg);

struct ExtractReport {
  int64_t written = 0, skipped_existing = 0;
  std::vector<std::string> bad;  // clip keys
  double audio_seconds = 0;
};

// Encodes the `text` of every clip not yet in `writer`, `batch_size` captions at a time.
ExtractReport extract_text_features(models::T5TextEncoder& encoder, const std::vector<Clip>& clips,
                                    FeatureCacheWriter& writer, int batch_size);

using NamedFeatures = std::map<std::string, torch::Tensor>;

// One batch of mono waves at the model rate (each at least one token long), zero-padded with
// lengths, on `device`: per wave its `wanted` features cut to its valid tokens, on the CPU.
std::vector<NamedFeatures> encode_waves(models::AudioVAEImpl& vae, const RootConfig& cfg,
                                        const std::vector<std::vector<float>>& waves,
                                        const std::vector<std::string>& wanted, const torch::Device& device);

// Encodes `clips` `batch_size` at a time (zero-padded with lengths) on the model's device and
// hands each readable clip's `wanted` features (names of VaeFeatures::named()), cut to its
// valid tokens and moved to the CPU, to `consume`; a name the model does not compute is
// absent. Wanting `semantic_emb` alone runs only the frozen encoder. Bad clips are skipped
// and listed; more than data.max_bad_files is an error.
ExtractReport encode_clips(models::AudioVAEImpl& vae, const RootConfig& cfg,
                           const std::vector<const Clip*>& clips, const std::vector<std::string>& wanted,
                           int batch_size, const torch::Device& device,
                           const std::function<void(const Clip&, const NamedFeatures&)>& consume);

// Encodes every clip not yet in `writer`, `batch_size` at a time (zero-padded with lengths),
// on the model's device. Bad clips are skipped and listed; more than `max_bad` (< 0: no
// limit) is an error.
ExtractReport extract_features(models::AudioVAEImpl& vae, const RootConfig& cfg,
                               const std::vector<Clip>& clips, const std::string& what,
                               FeatureCacheWriter& writer, int batch_size, const torch::Device& device);

}  // namespace losatok::data
