// The torchlibrosa / librosa front end (torchlibrosa.stft.Spectrogram, LogmelFilterBank;
// librosa.filters.mel), written from their published definitions.
#include "losatok/audio/torchlibrosa.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace F = torch::nn::functional;

namespace losatok::audio {

namespace {

double hz_to_mel_slaney(double f) {
  const double f_sp = 200.0 / 3, min_log_hz = 1000.0, min_log_mel = min_log_hz / f_sp;
  const double logstep = std::log(6.4) / 27.0;
  return f >= min_log_hz ? min_log_mel + std::log(f / min_log_hz) / logstep : f / f_sp;
}

double mel_to_hz_slaney(double m) {
  const double f_sp = 200.0 / 3, min_log_hz = 1000.0, min_log_mel = min_log_hz / f_sp;
  const double logstep = std::log(6.4) / 27.0;
  return m >= min_log_mel ? min_log_hz * std::exp(logstep * (m - min_log_mel)) : f_sp * m;
}

}  // namespace

torch::Tensor librosa_slaney_mel(int sample_rate, int n_fft, int n_mels, double fmin, double fmax) {
  const int n_freqs = n_fft / 2 + 1;
  std::vector<double> mel_f(n_mels + 2);
  const double lo = hz_to_mel_slaney(fmin), hi = hz_to_mel_slaney(fmax);
  for (int i = 0; i < n_mels + 2; ++i)  // numpy's linspace: lo + i * step, the last one exact
    mel_f[i] = mel_to_hz_slaney(i == n_mels + 1 ? hi : lo + i * ((hi - lo) / (n_mels + 1)));
  torch::Tensor w = torch::zeros({n_freqs, n_mels}, torch::kFloat64);
  auto a = w.accessor<double, 2>();
  for (int m = 0; m < n_mels; ++m) {
    const double enorm = 2.0 / (mel_f[m + 2] - mel_f[m]);
    for (int k = 0; k < n_freqs; ++k) {
      const double f = static_cast<double>(k) * sample_rate / n_fft;
      const double lower = -(mel_f[m] - f) / (mel_f[m + 1] - mel_f[m]);
      const double upper = (mel_f[m + 2] - f) / (mel_f[m + 2] - mel_f[m + 1]);
      a[k][m] = std::max(0.0, std::min(lower, upper)) * enorm;
    }
  }
  return w.to(torch::kFloat32);
}

std::pair<torch::Tensor, torch::Tensor> torchlibrosa_stft_kernels(int n_fft) {
  const int n_freqs = n_fft / 2 + 1;
  torch::Tensor re = torch::empty({n_freqs, 1, n_fft}, torch::kFloat64);
  torch::Tensor im = torch::empty({n_freqs, 1, n_fft}, torch::kFloat64);
  auto r = re.accessor<double, 3>();
  auto i = im.accessor<double, 3>();
  for (int n = 0; n < n_fft; ++n) {
    const double win = 0.5 - 0.5 * std::cos(2.0 * M_PI * n / n_fft);
    for (int k = 0; k < n_freqs; ++k) {
      const double angle = 2.0 * M_PI * static_cast<double>((static_cast<int64_t>(k) * n) % n_fft) / n_fft;
      r[k][0][n] = std::cos(angle) * win;
      i[k][0][n] = -std::sin(angle) * win;
    }
  }
  return {re.to(torch::kFloat32), im.to(torch::kFloat32)};
}

torch::Tensor torchlibrosa_power_spectrogram(const torch::Tensor& wave, const torch::Tensor& conv_real,
                                             const torch::Tensor& conv_imag, int hop) {
  const int64_t n_fft = conv_real.size(-1);
  const torch::Tensor x = F::pad(wave.to(torch::kFloat32).unsqueeze(1),
                                 F::PadFuncOptions({n_fft / 2, n_fft / 2}).mode(torch::kReflect));
  const torch::Tensor re = torch::conv1d(x, conv_real.to(x.device()), {}, hop),
                      im = torch::conv1d(x, conv_imag.to(x.device()), {}, hop);
  return (re.square() + im.square()).transpose(1, 2);  // (B, T, n_fft / 2 + 1)
}

torch::Tensor torchlibrosa_power_spectrogram(const torch::Tensor& wave, int n_fft, int hop) {
  const auto [re, im] = torchlibrosa_stft_kernels(n_fft);
  return torchlibrosa_power_spectrogram(wave, re, im, hop);
}

torch::Tensor torchlibrosa_log_mel(const torch::Tensor& power, const torch::Tensor& mel_w) {
  return 10.0 * torch::log10(torch::matmul(power, mel_w.to(power.device())).clamp_min(1e-10));
}

}  // namespace losatok::audio
