// A stage (SemBo, tokenizer, DiT, MAE) owns its config section, models, losses and optimizers'
// parameters, and exposes one training step, its validation and its state. The trainer owns the
// loop (train/trainer.h); neither knows the other's insides. A new stage is its own files plus
// one entry in src/train/stages.cpp (docs/architecture.md, "Adding a stage").
#pragma once

#include <torch/types.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "losatok/core/run_config.h"
#include "losatok/data/feature_cache.h"
#include "losatok/data/loader.h"
#include "losatok/train/optimizer.h"

namespace losatok::train {

using TensorMap = std::map<std::string, torch::Tensor>;

// One optimizer of the stage: its name (checkpoint files, logs), the parameters it updates
// (reference names) and the config section with its lr, betas and schedule.
struct OptimizerSpec {
  std::string name;
  NamedTensors parameters;
  OptimConfig config;
};

// What a step on one micro-batch returns for one optimizer.
struct StepOutput {
  torch::Tensor loss;  // scalar the trainer backpropagates; undefined when nothing is trained
  // The loss as weighted terms, each the mean over this micro-batch's count of the kind its key
  // names (Stage::loss_counts). When given, the trainer backpropagates
  //   sum_k term_k * count_k * world_size / (count_k summed over ranks and micro-batches)
  // instead of loss / micro-batches, so N ranks x batch B take the step one process takes with
  // batch N*B, padded batches too; `loss` is then only checked and reported.
  std::vector<std::pair<std::string, torch::Tensor>> terms;
  std::map<std::string, torch::Tensor> metrics;  // 0-d tensors to log (read back only when logged)
};

// Where validation may leave audio examples: `dir` for WAV / PNG files (created on demand),
// `audio` to log a clip to TensorBoard.
struct ValidationContext {
  int64_t step = 0;
  std::string dir;
  std::function<void(const std::string& tag, const std::vector<float>& samples, int sample_rate)> audio;
};

class Stage {
 public:
  virtual ~Stage() = default;
  virtual std::string name() const = 0;

  // The optimizers, in the order a step runs them (a GAN: discriminator first). Empty for
  // stages that fit statistics instead of training by gradient (PCA).
  virtual std::vector<OptimizerSpec> optimizers() = 0;
  // Whether optimizer `index` updates at `step` (a discriminator that starts late).
  virtual bool optimizer_active(std::size_t index, int64_t step) const { return true; }
  // Forward pass and losses of optimizer `index` (0 when there are none) on one micro-batch.
  virtual StepOutput train_step(std::size_t index, const data::Batch& batch, int64_t step) = 0;
  // What the terms of train_step(index, batch, step) average over (e.g. "tokens": the valid tokens,
  // "clips": the clips), from the batch's host-side lengths, before the forward pass. The keys may
  // depend on the config, index and step, never on the batch: every rank sums the same ones.
  virtual std::map<std::string, double> loss_counts(std::size_t index, const data::Batch& batch,
                                                    int64_t step) const {
    return {};
  }

  // Train / eval mode of the trainable modules (frozen ones stay in eval mode).
  virtual void set_training(bool training) = 0;
  // Validation over the batches `next` yields (false = no more), under no-grad, eval mode.
  virtual std::map<std::string, double> validate(const std::function<bool(data::Batch&)>& next,
                                                 const ValidationContext& context) = 0;
  // The validation metric keep-best watches when train.best_metric is empty (lower is better).
  virtual std::string best_metric() const = 0;

  // Weights for model.safetensors under the reference names (README.md, "Models and checkpoints"). With
  // `include_frozen` false, trained and fitted tensors only.
  virtual TensorMap model_state(bool include_frozen) = 0;
  // Loads weights by name (a resumed run strictly; --init-from leniently, with a report).
  virtual void load_model_state(const TensorMap& tensors, const std::string& source, bool strict) = 0;
  // Parameters the EMA averages (a subset of model_state, same names).
  virtual NamedTensors ema_parameters() = 0;
  // Extra metadata of the checkpoint's weight files (what a later reader needs besides the config,
  // e.g. the DiT's tokenizer record).
  virtual std::map<std::string, std::string> checkpoint_metadata() const { return {}; }
  // State that is neither weights nor optimizer (accumulated statistics).
  virtual TensorMap extra_state() { return {}; }
  virtual void load_extra_state(const TensorMap& tensors, const std::string& where) {}

  // The feature-cache producer this stage can read instead of computing features (nullopt =
  // the stage always works from audio).
  virtual std::optional<data::CacheProducer> cache_producer() { return std::nullopt; }
  // False when a stage reading the cache uses no audio at all: the loader then skips decoding.
  virtual bool needs_audio() const { return true; }
};

// A stage's registration: what the config layer knows of it (name, summary, its section's type
// and the old keys that moved there) and how to build it.
struct StageRegistration {
  StageInfo info;
  std::function<std::unique_ptr<Stage>(const RootConfig&, const torch::Device&)> make;
};

// What a stage's `<name>_stage()` function returns: Section is the stage's config struct.
template <class S, class Section>
StageRegistration stage_registration(std::string name, std::string summary,
                                     std::vector<std::pair<std::string, std::string>> moved_keys = {}) {
  return {
      {std::move(name), std::move(summary), section_of<Section>(), std::move(moved_keys)},
      [](const RootConfig& cfg, const torch::Device& device) { return std::make_unique<S>(cfg, device); }};
}

// Every stage of this build (src/train/stages.cpp).
const std::vector<StageRegistration>& stage_registry();

// The stage named by cfg.stage, its models built on `device` (frozen weights loaded).
std::unique_ptr<Stage> make_stage(const RootConfig& cfg, const torch::Device& device);

}  // namespace losatok::train
