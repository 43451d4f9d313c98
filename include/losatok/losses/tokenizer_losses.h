// The tokenizer's losses (docs/method.md, "Tokenizer"): spectral reconstruction, KL, dual-level semantic
// supervision, GAN hinge + feature matching, and the validation distances.
#pragma once

#include <torch/types.h>

#include <memory>
#include <string>
#include <vector>

#include "losatok/audio/mel.h"
#include "losatok/models/discriminators.h"

namespace losatok::losses {

// Multi-scale mel loss, one log-mel per scale i (n_fft[i], hop n_fft[i] / 4, n_mels[i],
// magnitude, centred reflect padding):
// - `dac` (DAC's MelSpectrogramLoss, the paper's L_mel): Slaney mel with Slaney area norm
//   0..sr/2, log10(max(mel, 1e-5)); the sum over scales of the mean L1 distance;
// - `vocos`: HTK mel without norm, log(max(mel, 1e-7)); the mean over scales.
class MultiScaleMelLoss {
 public:
  MultiScaleMelLoss(const std::string& kind, int sample_rate, const std::vector<int>& n_ffts,
                    const std::vector<int>& n_mels);
  torch::Tensor operator()(const torch::Tensor& y_hat, const torch::Tensor& y) const;  // (B, N) or (N)
  // DAC's published scales: windows 32 ... 2048, 5 ... 320 mels.
  static const std::vector<int>& dac_n_ffts();
  static const std::vector<int>& dac_n_mels();

 private:
  std::vector<std::unique_ptr<audio::LogMel>> mels_;
  bool sum_ = true;
};

// Mean over resolutions of spectral convergence ||S - S_hat||_F / ||S||_F plus the mean L1
// distance of log magnitudes (Parallel WaveGAN's multi-resolution STFT loss). Magnitudes are
// clamped at 1e-7 before the log. Returns {spectral convergence, log magnitude}.
class MultiResolutionStftLoss {
 public:
  MultiResolutionStftLoss(const std::vector<int>& n_ffts, const std::vector<int>& hops);
  std::pair<torch::Tensor, torch::Tensor> operator()(const torch::Tensor& y_hat,
                                                     const torch::Tensor& y) const;

 private:
  std::vector<int> n_ffts_, hops_;
};

// KL(N(mu, exp(logvar)) || N(0, 1)): per token the sum over dimensions of
// -0.5 (1 + logvar - mu^2 - exp(logvar)), each term first clamped from below at `clamp` when
// clamp > 0 ("free bits"); the mean over valid tokens. mask (B, T) bool or undefined.
torch::Tensor kl_loss(const torch::Tensor& mu, const torch::Tensor& logvar, const torch::Tensor& mask,
                      double clamp = 0.0);

// The reference's logvar penalty: per token the sum over dimensions of logvar^2; the mean over
// valid tokens. mask (B, T) bool or undefined.
torch::Tensor logvar_penalty(const torch::Tensor& logvar, const torch::Tensor& mask);

// Mean over valid tokens and channels of (x - target)^2, target detached.
torch::Tensor masked_mse(const torch::Tensor& x, const torch::Tensor& target, const torch::Tensor& mask);

// Hinge losses over one discriminator group, each divided by the number of discriminators
// (Vocos): D: mean(relu(1 - D(x))) + mean(relu(1 + D(x_hat))); G: mean(relu(1 - D(x_hat))).
torch::Tensor discriminator_hinge_loss(const std::vector<models::DiscriminatorOutput>& real,
                                       const std::vector<models::DiscriminatorOutput>& fake);
torch::Tensor generator_hinge_loss(const std::vector<models::DiscriminatorOutput>& fake);
// Sum over discriminators and layers of mean |f_real - f_fake|, divided by the number of
// discriminators; real features detached.
torch::Tensor feature_matching_loss(const std::vector<models::DiscriminatorOutput>& real,
                                    const std::vector<models::DiscriminatorOutput>& fake);

// Scale-invariant SDR in dB per clip (B): 10 log10(||a s||^2 / ||a s - y_hat||^2) with
// a = <y_hat, s> / ||s||^2, after removing each signal's mean (over valid samples if mask).
torch::Tensor si_sdr(const torch::Tensor& y_hat, const torch::Tensor& y, const torch::Tensor& mask = {});

}  // namespace losatok::losses
