// The DiT stage (SPEC section 1.4): rectified flow on normalised tokenizer latents read from
// the feature cache, conditioned on text (or cached embeddings) by cross-attention, with
// condition dropout for classifier-free guidance; TTS adds F5-TTS in-context infilling. The
// pipeline below is what validation and `losatok generate` share: conditioning, the Euler
// sampler with CFG, and decoding with the tokenizer.
#pragma once

#include <memory>

#include "losatok/data/text.h"
#include "losatok/models/dit.h"
#include "losatok/models/tokenizer_checkpoint.h"
#include "losatok/train/stage.h"

namespace losatok::train {

// One clip to generate.
struct GenerationRequest {
  std::string text;                 // caption (TTA / TTM) or transcript (TTS)
  double seconds = 0;               // 0 = estimated (TTS); the prompt is not counted
  std::vector<float> prompt_audio;  // TTS: audio prompt at audio.sample_rate (may be empty)
  std::string prompt_text;          // its transcript
  torch::Tensor condition;          // (L, C) embeddings, for models conditioned on a cache
};

// The generation model with its conditioning and the tokenizer that decodes its latents.
class DiTPipeline {
 public:
  // cond_dim: width of cached condition embeddings (dit.condition.source cache), else unused.
  DiTPipeline(const RootConfig& cfg, const torch::Device& device, int cond_dim = 0);
  models::DiTModelImpl& model() { return *model_; }
  const RootConfig& config() const { return cfg_; }
  // Loads a tokenizer checkpoint to decode (and encode prompts) with.
  void load_tokenizer(const std::string& path);
  models::AudioVAEImpl* tokenizer() { return tokenizer_.vae ? tokenizer_.vae.get() : nullptr; }
  const models::LoadedTokenizer& tokenizer_checkpoint() const { return tokenizer_; }

  struct Condition {
    torch::Tensor cond, cond_mask;  // (B, L, C), (B, L) bool
    torch::Tensor aligned;          // TTS: (B, T, C) text stretched to the frames with the filler
  };
  // The text condition of a batch; frame_mask (B, T) bool gives the TTS alignment length.
  Condition text_condition(const std::vector<std::string>& texts, const torch::Tensor& frame_mask);
  // Condition from per-clip embeddings (L_i, C).
  Condition embedding_condition(const std::vector<torch::Tensor>& embeddings);
  // Text tokens of one text (their count sets the TTS duration).
  std::vector<int64_t> tokens(const std::string& text) { return text_tokens_->encode(text); }

  // Latent frames to generate for a request (without the prompt).
  int64_t frames_for(const GenerationRequest& r);
  // Normalised prompt latents (P, D) of an audio prompt.
  torch::Tensor encode_prompt(const std::vector<float>& audio);
  // Euler + CFG: the de-normalised latents (T_i, D) of each request, on the CPU.
  std::vector<torch::Tensor> generate(const std::vector<GenerationRequest>& requests,
                                      const SamplerConfig& sampler);
  // Waveform of de-normalised latents (T, D).
  std::vector<float> decode(const torch::Tensor& latents);

 private:
  RootConfig cfg_;
  torch::Device device_;
  models::DiTModel model_{nullptr};
  std::unique_ptr<data::TextTokenizer> text_tokens_;
  models::LoadedTokenizer tokenizer_;
};

class DiTStage : public Stage {
 public:
  DiTStage(const RootConfig& cfg, const torch::Device& device);
  std::string name() const override { return "dit"; }
  std::vector<OptimizerSpec> optimizers() override;
  StepOutput train_step(std::size_t index, const data::Batch& batch, int64_t step) override;
  void set_training(bool training) override;
  std::map<std::string, double> validate(const std::function<bool(data::Batch&)>& next,
                                         const ValidationContext& context) override;
  std::string best_metric() const override { return "val/fm_loss"; }
  TensorMap model_state(bool include_frozen) override;
  void load_model_state(const TensorMap& tensors, const std::string& source, bool strict) override;
  NamedTensors ema_parameters() override;
  std::optional<data::CacheProducer> cache_producer() override;
  bool needs_audio() const override { return false; }  // latents only

  DiTPipeline& pipeline() { return *pipeline_; }

 private:
  struct Inputs {
    torch::Tensor z, mask;  // normalised latents (B, T, D), valid frames (B, T)
    DiTPipeline::Condition condition;
    torch::Tensor prompt, loss_mask;  // TTS: latents outside the infill span; where the loss counts
  };
  Inputs inputs(const data::Batch& batch, bool sample);
  // Applies condition dropout (rows of `drop`, CPU bool) and, for TTS, the infill span (random,
  // or everything after the first 30 %), the prompt (kept in rows of `prompt_keep` when given)
  // and the loss mask.
  void apply_conditioning(Inputs& in, const data::Batch& batch, torch::Tensor drop,
                          const torch::Tensor& prompt_keep, bool random_span);
  // The per-dimension latent statistics (and the TTS speaking rate) from the training clips in
  // the cache, once per run (a resumed run loads them with the weights).
  void ensure_statistics();

  RootConfig cfg_;
  torch::Device device_;
  std::unique_ptr<DiTPipeline> pipeline_;
  std::shared_ptr<data::FeatureCache> condition_cache_;
  std::optional<data::CacheProducer> producer_;  // hashing the tokenizer's weights takes a while
  std::shared_ptr<data::FeatureCache> latents_;  // the training cache (clip lengths)
  bool statistics_ready_ = false;
  int64_t cropped_clips_ = 0;
};

}  // namespace losatok::train
