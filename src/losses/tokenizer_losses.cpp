// Spectral, KL, semantic and GAN losses of the tokenizer stage.
#include "losatok/losses/tokenizer_losses.h"

#include <torch/torch.h>

#include "losatok/audio/stft.h"
#include "losatok/core/error.h"

namespace losatok::losses {

MultiScaleMelLoss::MultiScaleMelLoss(const std::string& kind, int sample_rate, const std::vector<int>& n_ffts,
                                     const std::vector<int>& n_mels) {
  if (kind != "dac" && kind != "vocos") throw Error("mel loss: unknown kind '" + kind + "' (dac or vocos)");
  if (n_ffts.size() != n_mels.size() || n_ffts.empty())
    throw Error("mel loss: n_ffts and n_mels must be non-empty lists of the same length");
  sum_ = kind == "dac";
  for (std::size_t i = 0; i < n_ffts.size(); ++i) {
    MelConfig c;
    if (sum_) {
      c = MelConfig::dac(sample_rate, n_ffts[i], n_mels[i]);
    } else {
      c = MelConfig::vocos();
      c.sample_rate = sample_rate;
      c.n_fft = c.win_length = n_ffts[i];
      c.hop_length = n_ffts[i] / 4;
      c.n_mels = n_mels[i];
      c.f_max = 0.0;
    }
    mels_.push_back(std::make_unique<audio::LogMel>(c));
  }
}

const std::vector<int>& MultiScaleMelLoss::dac_n_ffts() {
  static const std::vector<int> v = {32, 64, 128, 256, 512, 1024, 2048};
  return v;
}

const std::vector<int>& MultiScaleMelLoss::dac_n_mels() {
  static const std::vector<int> v = {5, 10, 20, 40, 80, 160, 320};
  return v;
}

torch::Tensor MultiScaleMelLoss::operator()(const torch::Tensor& y_hat, const torch::Tensor& y) const {
  torch::Tensor total;
  for (const auto& mel : mels_) {
    const torch::Tensor l = ((*mel)(y_hat) - (*mel)(y)).abs().mean();
    total = total.defined() ? total + l : l;
  }
  return sum_ ? total : total / static_cast<double>(mels_.size());
}

MultiResolutionStftLoss::MultiResolutionStftLoss(const std::vector<int>& n_ffts, const std::vector<int>& hops)
    : n_ffts_(n_ffts), hops_(hops) {
  if (n_ffts.size() != hops.size() || n_ffts.empty())
    throw Error("STFT loss: n_ffts and hops must be non-empty lists of the same length");
}

std::pair<torch::Tensor, torch::Tensor> MultiResolutionStftLoss::operator()(const torch::Tensor& y_hat,
                                                                            const torch::Tensor& y) const {
  torch::Tensor sc, mag;
  for (std::size_t i = 0; i < n_ffts_.size(); ++i) {
    const torch::Tensor w = audio::hann_window(n_ffts_[i], y.options());
    const torch::Tensor s_hat = audio::stft(y_hat, n_ffts_[i], hops_[i], n_ffts_[i], w).abs().clamp_min(1e-7);
    const torch::Tensor s = audio::stft(y, n_ffts_[i], hops_[i], n_ffts_[i], w).abs().clamp_min(1e-7);
    const torch::Tensor c = (s - s_hat).norm() / s.norm();
    const torch::Tensor m = (s.log() - s_hat.log()).abs().mean();
    sc = sc.defined() ? sc + c : c;
    mag = mag.defined() ? mag + m : m;
  }
  const double n = static_cast<double>(n_ffts_.size());
  return {sc / n, mag / n};
}

torch::Tensor kl_loss(const torch::Tensor& mu, const torch::Tensor& logvar, const torch::Tensor& mask,
                      double clamp) {
  torch::Tensor terms = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp());  // (B, T, D)
  if (clamp > 0) terms = terms.clamp_min(clamp);
  const torch::Tensor per_token = terms.sum(-1);  // (B, T)
  if (!mask.defined()) return per_token.mean();
  const torch::Tensor m = mask.to(per_token.scalar_type());
  return (per_token * m).sum() / m.sum().clamp_min(1);
}

torch::Tensor logvar_penalty(const torch::Tensor& logvar, const torch::Tensor& mask) {
  const torch::Tensor per_token = logvar.pow(2).sum(-1);  // (B, T)
  if (!mask.defined()) return per_token.mean();
  const torch::Tensor m = mask.to(per_token.scalar_type());
  return (per_token * m).sum() / m.sum().clamp_min(1);
}

torch::Tensor masked_mse(const torch::Tensor& x, const torch::Tensor& target, const torch::Tensor& mask) {
  const torch::Tensor d = (x - target.detach()).pow(2);
  if (!mask.defined()) return d.mean();
  const torch::Tensor m = mask.to(d.scalar_type()).unsqueeze(-1);
  return (d * m).sum() / (m.sum() * x.size(-1)).clamp_min(1);
}

torch::Tensor discriminator_hinge_loss(const std::vector<models::DiscriminatorOutput>& real,
                                       const std::vector<models::DiscriminatorOutput>& fake) {
  torch::Tensor total;
  for (std::size_t i = 0; i < real.size(); ++i) {
    const torch::Tensor l = torch::relu(1 - real[i].logits).mean() + torch::relu(1 + fake[i].logits).mean();
    total = total.defined() ? total + l : l;
  }
  return total / static_cast<double>(real.size());
}

torch::Tensor generator_hinge_loss(const std::vector<models::DiscriminatorOutput>& fake) {
  torch::Tensor total;
  for (const auto& f : fake) {
    const torch::Tensor l = torch::relu(1 - f.logits).mean();
    total = total.defined() ? total + l : l;
  }
  return total / static_cast<double>(fake.size());
}

torch::Tensor feature_matching_loss(const std::vector<models::DiscriminatorOutput>& real,
                                    const std::vector<models::DiscriminatorOutput>& fake) {
  torch::Tensor total;
  for (std::size_t i = 0; i < real.size(); ++i)
    for (std::size_t k = 0; k < real[i].features.size(); ++k) {
      const torch::Tensor l = (real[i].features[k].detach() - fake[i].features[k]).abs().mean();
      total = total.defined() ? total + l : l;
    }
  return total / static_cast<double>(real.size());
}

torch::Tensor si_sdr(const torch::Tensor& y_hat, const torch::Tensor& y, const torch::Tensor& mask) {
  const torch::Tensor m = mask.defined() ? mask.to(y.scalar_type()) : torch::ones_like(y);
  const torch::Tensor n = m.sum(-1, true).clamp_min(1);
  const torch::Tensor s = (y - (y * m).sum(-1, true) / n) * m;
  const torch::Tensor e = (y_hat - (y_hat * m).sum(-1, true) / n) * m;
  const torch::Tensor a = (e * s).sum(-1, true) / s.pow(2).sum(-1, true).clamp_min(1e-12);
  const torch::Tensor target = a * s;
  return 10 *
         torch::log10(target.pow(2).sum(-1).clamp_min(1e-12) / (target - e).pow(2).sum(-1).clamp_min(1e-12));
}

}  // namespace losatok::losses
