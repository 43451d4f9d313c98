// What the model-using subcommands share: checkpoint options, and building + loading the
// LoSATok tokenizer from a checkpoint and the resolved config.
#pragma once

#include <torch/types.h>

#include "commands.h"
#include "losatok/io/weights.h"
#include "losatok/models/audio_vae.h"

namespace losatok::cli {

struct ModelOptions {
  std::string checkpoint;
  bool lenient = false;
  std::string device;  // overrides runtime.device when given
};
void add_model_options(CLI::App& sub, ModelOptions& o);

struct LoadedVae {
  RootConfig config;
  models::AudioVAE vae{nullptr};
  torch::Device device{torch::kCPU};
};
// Reads the checkpoint (its carried config is the base under --config files and overrides),
// builds the AudioVAE and loads it by name: strict unless --lenient, and a checkpoint of the
// semantic encoder alone is refused unless `encoder_only_ok`.
LoadedVae load_vae(const ModelOptions& mo, const ConfigOptions& co, const Context& ctx,
                   bool encoder_only_ok = false);

// (B, N) waves padded with silence or trimmed to `n` samples: outputs line up with inputs.
torch::Tensor fit_length(const torch::Tensor& wave, int64_t n);

}  // namespace losatok::cli
