// The tokenizer stage (docs/method.md, "Tokenizer"): frozen semantic encoder + SemBo (from a SemBo run),
// trainable acoustic branch, fc_a / fc_mu / fc_logvar and decoder, trained with multi-scale
// mel, multi-resolution STFT, KL, dual-level semantic supervision and (optionally delayed)
// MPD + MRD GAN losses; or one of the paper's baselines (`model.variant`).
#pragma once

#include "losatok/eval/metrics.h"
#include "losatok/losses/tokenizer_losses.h"
#include "losatok/models/audio_vae.h"
#include "losatok/models/discriminators.h"
#include "losatok/train/stage.h"
#include "losatok/train/train_config.h"

namespace losatok::train {

// tokenizer.loss (docs/method.md, "Tokenizer losses"), the paper's Eq. 5 by default:
// L_G = lambda_mel L_mel + lambda_sem (L_H + L_L) + lambda_kl KL + GAN terms (tokenizer.gan), plus
// the options lambda_stft (SC + log-mag, off in the paper) and lambda_logvar (sum_d logvar^2).
struct TokenizerLossConfig {
  std::string semantic_mode = "both";  // both | high_only | low_only: which levels L_sem compares
  double lambda_sem = 45.0;
  double lambda_kl = 1e-2;
  double kl_clamp = 0.0;       // > 0: each KL term clamped from below ("free bits")
  double lambda_logvar = 0.0;  // penalty mean_t sum_d logvar^2 (the reference's option)
  double lambda_mel = 45.0;
  std::string mel_loss = "dac";  // dac (summed over scales, log10, Slaney mel) | vocos (mean, ln, HTK)
  std::vector<int> mel_n_fft = {32, 64, 128, 256, 512, 1024, 2048};  // window = n_fft, hop = n_fft / 4
  std::vector<int> mel_n_mels = {5, 10, 20, 40, 80, 160, 320};
  double lambda_stft = 0.0;
  std::vector<int> stft_n_fft = {512, 1024, 2048};
  std::vector<int> stft_hop = {128, 256, 512};

  template <class V>
  void visit(V& v) {
    v("semantic_mode", semantic_mode);
    v("lambda_sem", lambda_sem);
    v("lambda_kl", lambda_kl);
    v("kl_clamp", kl_clamp);
    v("lambda_logvar", lambda_logvar);
    v("lambda_mel", lambda_mel);
    v("mel_loss", mel_loss);
    v("mel_n_fft", mel_n_fft);
    v("mel_n_mels", mel_n_mels);
    v("lambda_stft", lambda_stft);
    v("stft_n_fft", stft_n_fft);
    v("stft_hop", stft_hop);
  }
  void validate() const;
};

// tokenizer.gan: the discriminators and their optimizer (Vocos defaults).
struct GanConfig {
  bool enabled = true;
  int64_t start_step = 0;  // spectral losses only before this step (discriminator idle too)
  std::vector<int> periods = {2, 3, 5, 7, 11};
  std::vector<int> mpd_channels = {32, 128, 512, 1024, 1024};  // HiFi-GAN; narrower for CPU runs
  std::vector<int> mrd_windows = {2048, 1024, 512};
  int mrd_channels = 32;
  double mrd_weight = 0.1;  // MRD adversarial + feature-matching terms, and its D loss
  double lambda_adv = 1.0;
  double lambda_fm = 1.0;
  OptimConfig optim{5e-4, {0.8, 0.9}, 1e-8, 0.01, {}};

  template <class V>
  void visit(V& v) {
    v("enabled", enabled);
    v("start_step", start_step);
    v("periods", periods);
    v("mpd_channels", mpd_channels);
    v("mrd_windows", mrd_windows);
    v("mrd_channels", mrd_channels);
    v("mrd_weight", mrd_weight);
    v("lambda_adv", lambda_adv);
    v("lambda_fm", lambda_fm);
    v("optim", optim);
  }
  void validate() const;
};

// The `tokenizer:` section.
struct TokenizerStageConfig {
  // A SemBo run's checkpoint (or its export) holding semantic_encoder.* (encoder + bottleneck);
  // "" = train.encoder_weights for the encoder and a random bottleneck (smoke runs only).
  std::string sembo_checkpoint;
  bool sample_latent = true;  // decode z = mu + sigma eps while training (mu at validation)
  int demo_clips = 3;         // validation clips written as WAV + spectrogram PNG + TensorBoard audio
  TokenizerLossConfig loss;
  GanConfig gan;

  template <class V>
  void visit(V& v) {
    v("sembo_checkpoint", sembo_checkpoint);
    v("sample_latent", sample_latent);
    v("demo_clips", demo_clips);
    v("loss", loss);
    v("gan", gan);
  }
  void validate() const;
};

class TokenizerStage : public Stage {
 public:
  TokenizerStage(const RootConfig& cfg, const torch::Device& device);
  std::string name() const override { return "tokenizer"; }
  std::vector<OptimizerSpec> optimizers() override;
  bool optimizer_active(std::size_t index, int64_t step) const override;
  StepOutput train_step(std::size_t index, const data::Batch& batch, int64_t step) override;
  // "clips" (mel, STFT, adversarial, feature matching, the discriminator: means over clips when
  // every batch has the crop's length) and "tokens" (KL, logvar penalty, semantic terms).
  std::map<std::string, double> loss_counts(std::size_t index, const data::Batch& batch,
                                            int64_t step) const override;
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
  // Parameters of the discriminators (empty when tokenizer.gan.enabled is false).
  NamedTensors discriminator_parameters();

 private:
  struct Forward {
    models::VaeFeatures f;
    torch::Tensor y, y_hat, mask;  // (B, L) target, reconstruction, valid samples
  };
  Forward forward(const data::Batch& batch, bool sample);
  bool gan_on(int64_t step) const { return section_.gan.enabled && step >= section_.gan.start_step; }

  RootConfig cfg_;
  TokenizerStageConfig section_;
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
