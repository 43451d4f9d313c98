// The tokenizer stage (SPEC section 1.3): frozen semantic encoder + SemBo (from a SemBo run),
// trainable acoustic branch, fc_a / fc_mu / fc_logvar and decoder, trained with multi-scale
// mel, multi-resolution STFT, KL, dual-level semantic supervision and (optionally delayed)
// MPD + MRD GAN losses; or one of the paper's baselines (`model.variant`).
#pragma once

#include "losatok/eval/metrics.h"
#include "losatok/losses/tokenizer_losses.h"
#include "losatok/models/audio_vae.h"
#include "losatok/models/discriminators.h"
#include "losatok/train/stage.h"

namespace losatok::train {

class TokenizerStage : public Stage {
 public:
  TokenizerStage(const RootConfig& cfg, const torch::Device& device);
  std::string name() const override { return "tokenizer"; }
  std::vector<OptimizerSpec> optimizers() override;
  bool optimizer_active(std::size_t index, int64_t step) const override;
  StepOutput train_step(std::size_t index, const data::Batch& batch, int64_t step) override;
  void set_training(bool training) override;
  std::map<std::string, double> validate(const std::function<bool(data::Batch&)>& next,
                                         const ValidationContext& context) override;
  std::string best_metric() const override { return "val/mel_distance"; }
  TensorMap model_state(bool include_frozen) override;
  void load_model_state(const TensorMap& tensors, const std::string& source, bool strict) override;
  NamedTensors ema_parameters() override;
  TensorMap extra_state() override;
  void load_extra_state(const TensorMap& tensors, const std::string& where) override;
  std::optional<data::CacheProducer> cache_producer() override;

  models::AudioVAE& vae() { return vae_; }
  // Parameters of the discriminators (empty when gan.enabled is false).
  NamedTensors discriminator_parameters();

 private:
  struct Forward {
    models::VaeFeatures f;
    torch::Tensor y, y_hat, mask;  // (B, L) target, reconstruction, valid samples
  };
  Forward forward(const data::Batch& batch, bool sample);
  bool gan_on(int64_t step) const { return cfg_.gan.enabled && step >= cfg_.gan.start_step; }

  RootConfig cfg_;
  torch::Device device_;
  models::AudioVAE vae_{nullptr};
  std::shared_ptr<torch::nn::Module> disc_;  // `multiperioddisc`, `multiresddisc`
  models::MultiPeriodDiscriminator mpd_{nullptr};
  models::MultiResolutionDiscriminator mrd_{nullptr};
  losses::MultiScaleMelLoss mel_loss_;
  losses::MultiResolutionStftLoss stft_loss_;
  eval::ReconMetrics val_metrics_;  // the distances `losatok eval recon` reports
};

}  // namespace losatok::train
