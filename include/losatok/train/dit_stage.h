// The DiT stage (docs/method.md, "DiT"): rectified flow on normalised tokenizer latents read from
// the feature cache, conditioned on text (or cached embeddings) by cross-attention, with
// condition dropout for classifier-free guidance; TTS adds F5-TTS in-context infilling. Its
// section (`dit:`, models/dit_config.h) and the generation pipeline (gen/dit_pipeline.h) are
// shared with `losatok generate` and evaluation.
#pragma once

#include <memory>

#include "losatok/gen/dit_pipeline.h"
#include "losatok/train/stage.h"

namespace losatok::train {

class DiTStage : public Stage {
 public:
  DiTStage(const RootConfig& cfg, const torch::Device& device);
  std::string name() const override { return "dit"; }
  std::vector<OptimizerSpec> optimizers() override;
  StepOutput train_step(std::size_t index, const data::Batch& batch, int64_t step) override;
  // "tokens": the valid latent frames (TTA / TTM; the TTS loss counts a random infill span, drawn
  // in the step, and keeps the per-rank mean).
  std::map<std::string, double> loss_counts(std::size_t index, const data::Batch& batch,
                                            int64_t step) const override;
  void set_training(bool training) override;
  std::map<std::string, double> validate(const std::function<bool(data::Batch&)>& next,
                                         const ValidationContext& context) override;
  std::string best_metric() const override { return "val/fm_loss"; }
  TensorMap model_state(bool include_frozen) override;
  void load_model_state(const TensorMap& tensors, const std::string& source, bool strict) override;
  NamedTensors ema_parameters() override;
  std::optional<data::CacheProducer> cache_producer() override;
  bool needs_audio() const override { return false; }  // latents only
  // The tokenizer record (gen::kTokenizerKey): generation finds the tokenizer from any folder.
  std::map<std::string, std::string> checkpoint_metadata() const override;

  gen::DiTPipeline& pipeline() { return *pipeline_; }

 private:
  struct Inputs {
    torch::Tensor z, mask;  // normalised latents (B, T, D), valid frames (B, T)
    gen::DiTPipeline::Condition condition;
    torch::Tensor prompt, loss_mask;  // TTS: latents outside the infill span; where the loss counts
    int task = -1;                    // the joint model's task of the batch
    bool speech = false;              // UniFlow TTS: the phoneme path
    // UniFlow TTS: rows whose transcript is theirs (not cropped, alignable) (B) bool; the duration
    // losses and the alignment prior's loss (0-d) over those rows.
    torch::Tensor aligned_rows, local_duration_loss, global_duration_loss, prior_loss;
  };
  // valid: the batch comes from data.valid_sources (their tasks).
  Inputs inputs(const data::Batch& batch, bool sample, bool valid);
  // The phoneme path of a batch: encodings, durations (alignment search or the manifest's), the
  // time-aligned content and the duration and prior losses.
  void speech_condition(Inputs& in, const data::Batch& batch);
  // Whether clip i of the batch was cropped (its transcript no longer matches its frames).
  bool cropped(const data::Batch& batch, int64_t i) const;
  int batch_task(const data::Batch& batch, bool valid) const;
  // Applies condition dropout (rows of `drop`, CPU bool) and, for TTS, the infill span (random,
  // or everything after the first 30 %), the prompt (kept in rows of `prompt_keep` when given)
  // and the loss mask.
  void apply_conditioning(Inputs& in, const data::Batch& batch, torch::Tensor drop,
                          const torch::Tensor& prompt_keep, bool random_span);
  // The per-dimension latent statistics (and the TTS speaking rate) from the training clips in
  // the cache, once per run (a resumed run loads them with the weights).
  void ensure_statistics();

  RootConfig cfg_;
  DiTStageConfig dit_;
  torch::Device device_;
  std::unique_ptr<gen::DiTPipeline> pipeline_;
  std::shared_ptr<data::FeatureCache> condition_cache_, speaker_cache_;
  std::vector<std::string> speakers_;            // the training clips' speaker names (table), sorted
  std::optional<data::CacheProducer> producer_;  // hashing the tokenizer's weights takes a while
  std::shared_ptr<data::FeatureCache> latents_;  // the training cache (clip lengths)
  bool statistics_ready_ = false;
  std::string tokenizer_record_;
  int64_t cropped_clips_ = 0, unalignable_clips_ = 0;
};

}  // namespace losatok::train
