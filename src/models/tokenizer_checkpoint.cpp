// Configs from weight-file metadata, and loading a tokenizer checkpoint.
#include "losatok/models/tokenizer_checkpoint.h"

#include <torch/torch.h>

#include "losatok/core/error.h"
#include "losatok/core/logging.h"
#include "losatok/models/init.h"

namespace losatok::models {

YAML::Node checkpoint_config(const io::WeightSet& weights) {
  const auto it = weights.metadata.find(kConfigMetadataKey);
  if (it == weights.metadata.end()) return YAML::Node();
  return config::parse_yaml(it->second, "the config in the metadata of checkpoint '" + weights.source + "'");
}

RootConfig config_from_checkpoint(const io::WeightSet& weights) {
  return read_root_config({}, {}, checkpoint_config(weights));
}

LoadedTokenizer load_tokenizer_checkpoint(const std::string& path, const torch::Device& device) {
  return load_tokenizer_weights(io::read_weights(path), device);
}

LoadedTokenizer load_tokenizer_weights(const io::WeightSet& weights, const torch::Device& device) {
  LoadedTokenizer out;
  out.source = weights.source;
  out.config = config_from_checkpoint(weights);
  const io::MappedWeights mapped = io::map_to_vae_names(weights.tensors);
  if (!mapped.scope.empty())
    throw Error("tokenizer checkpoint '" + weights.source + "' holds only the semantic encoder (" +
                mapped.scope + "*), not a trained tokenizer");
  {
    const SkipInit skip;  // every weight comes from the checkpoint
    out.vae = AudioVAE(out.config.model, out.config.frontend.dasheng, out.config.frontend.vocos);
  }
  const io::LoadReport report = io::load_weights(*out.vae, mapped.tensors, weights.source, {});
  spdlog::info("tokenizer {}: {}", weights.source, report.summary());
  out.vae->to(device);
  out.vae->eval();
  for (auto& p : out.vae->parameters()) p.set_requires_grad(false);
  return out;
}

}  // namespace losatok::models
