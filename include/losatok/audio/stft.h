// STFT helpers on torch tensors, including Vocos' "same"-padding inverse STFT.
#pragma once

#include <torch/types.h>

namespace losatok::audio {

// Periodic Hann window (torch.hann_window default), float32.
torch::Tensor hann_window(int64_t length, const torch::TensorOptions& options = {});

// Complex STFT of x (N) or (B, N) -> (F, T) or (B, F, T), F = n_fft/2 + 1. With `center`,
// the signal is reflect-padded by n_fft/2 on both sides (torch.stft / torchaudio).
torch::Tensor stft(const torch::Tensor& x, int64_t n_fft, int64_t hop_length, int64_t win_length,
                   const torch::Tensor& window, bool center = true);

// Inverse of stft(center=true); `length` trims/pads the output (0 = natural length).
torch::Tensor istft(const torch::Tensor& spec, int64_t n_fft, int64_t hop_length, int64_t win_length,
                    const torch::Tensor& window, int64_t length = 0);

// Vocos "same" padding (win_length must equal n_fft). Analysis: pad (win - hop)/2 zeros both sides, frames
// without centring. Synthesis: irfft -> window -> overlap-add -> divide by the overlap-added squared window
// (the envelope) -> trim the padding, so T frames give T * hop samples.
torch::Tensor stft_same(const torch::Tensor& x, int64_t n_fft, int64_t hop_length, int64_t win_length,
                        const torch::Tensor& window);
torch::Tensor istft_same(const torch::Tensor& spec, int64_t n_fft, int64_t hop_length, int64_t win_length,
                         const torch::Tensor& window);

}  // namespace losatok::audio
