// Building a model from one of our weight files: the config its metadata carries, and the
// LoSATok tokenizer loaded from a checkpoint (the DiT decodes and encodes prompts with it).
#pragma once

#include <string>

#include "losatok/core/run_config.h"
#include "losatok/io/weights.h"
#include "losatok/models/audio_vae.h"

namespace losatok::models {

// The config sections a weight file carries under kConfigMetadataKey (a null node when it has
// none). A malformed one is an error naming the file.
YAML::Node checkpoint_config(const io::WeightSet& weights);

// The defaults under the carried sections, validated.
RootConfig config_from_checkpoint(const io::WeightSet& weights);

struct LoadedTokenizer {
  RootConfig config;  // the tokenizer's own (from its metadata)
  AudioVAE vae{nullptr};
  std::string source;
};
// The whole tokenizer, strictly, in eval mode on `device`. Errors name the file.
LoadedTokenizer load_tokenizer_checkpoint(const std::string& path, const torch::Device& device);
// The same from weights already read (the metadata must carry the tokenizer's config).
LoadedTokenizer load_tokenizer_weights(const io::WeightSet& weights, const torch::Device& device);

}  // namespace losatok::models
