// The torchlibrosa front end that PANNs CNN14 and LAION-CLAP's HTSAT were trained on: the STFT as
// a convolution with windowed DFT kernels, librosa's Slaney mel filterbank, power_to_db. Both
// instruments compute their log-mel here, from the same kernels their checkpoints store.
#pragma once

#include <torch/types.h>

#include <utility>

namespace losatok::audio {

// librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax) with its defaults (Slaney's mel scale and
// area normalisation), computed in float64: (n_fft / 2 + 1, n_mels) float32, as torchlibrosa's
// LogmelFilterBank.melW holds it.
torch::Tensor librosa_slaney_mel(int sample_rate, int n_fft, int n_mels, double fmin, double fmax);

// torchlibrosa's STFT kernels: (n_fft / 2 + 1, 1, n_fft) float32 cos(2 pi k n / N) w[n] and
// -sin(2 pi k n / N) w[n], w the periodic Hann window (float64 compute).
std::pair<torch::Tensor, torch::Tensor> torchlibrosa_stft_kernels(int n_fft);

// torchlibrosa's Spectrogram (power 2): reflect-pad n_fft / 2 both sides, frames every `hop`,
// |STFT|^2 through the kernels. wave (B, N) float -> (B, T, n_fft / 2 + 1), T = N / hop + 1.
torch::Tensor torchlibrosa_power_spectrogram(const torch::Tensor& wave, const torch::Tensor& conv_real,
                                             const torch::Tensor& conv_imag, int hop);
// The same with kernels made for `n_fft`.
torch::Tensor torchlibrosa_power_spectrogram(const torch::Tensor& wave, int n_fft, int hop);

// LogmelFilterBank with ref 1, amin 1e-10, top_db None: 10 log10(max(power @ melW, 1e-10)),
// (B, T, F) -> (B, T, n_mels).
torch::Tensor torchlibrosa_log_mel(const torch::Tensor& power, const torch::Tensor& mel_w);

}  // namespace losatok::audio
