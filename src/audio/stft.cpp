// STFT / iSTFT wrappers and the Vocos same-padding iSTFT.
#include "losatok/audio/stft.h"

#include <torch/torch.h>

#include "losatok/core/compat.h"
#include "losatok/core/error.h"

namespace losatok::audio {

namespace F = torch::nn::functional;

torch::Tensor hann_window(int64_t length, const torch::TensorOptions& options) {
  return torch::hann_window(length, /*periodic=*/true, options.dtype(torch::kFloat32));
}

torch::Tensor stft(const torch::Tensor& x, int64_t n_fft, int64_t hop_length, int64_t win_length,
                   const torch::Tensor& window, bool center) {
  if (x.dim() != 1 && x.dim() != 2)
    throw Error("stft: expected (N) or (B, N), got " + std::to_string(x.dim()) + " dims");
  if (center && x.size(-1) <= n_fft / 2)
    throw Error("stft: " + std::to_string(x.size(-1)) + " samples is too short for reflect padding of " +
                std::to_string(n_fft / 2));
  return torch::stft(x, n_fft, hop_length, win_length, window, center, "reflect",
                     /*normalized=*/false, /*onesided=*/true, /*return_complex=*/true);
}

torch::Tensor istft(const torch::Tensor& spec, int64_t n_fft, int64_t hop_length, int64_t win_length,
                    const torch::Tensor& window, int64_t length) {
  return torch::istft(spec, n_fft, hop_length, win_length, window, /*center=*/true, /*normalized=*/false,
                      /*onesided=*/true,
                      length > 0 ? compat::optional<int64_t>(length) : compat::optional<int64_t>(),
                      /*return_complex=*/false);
}

namespace {
// Vocos' same padding assumes the window fills the FFT frame (its ISTFT takes the first
// win_length samples of each inverse FFT) and that frames overlap.
void check_same_args(const char* fn, int64_t n_fft, int64_t hop_length, int64_t win_length) {
  if (hop_length <= 0 || win_length != n_fft || hop_length > win_length)
    throw Error(std::string(fn) + ": need win_length == n_fft and 0 < hop_length <= win_length, got n_fft " +
                std::to_string(n_fft) + ", window " + std::to_string(win_length) + ", hop " +
                std::to_string(hop_length));
}
}  // namespace

torch::Tensor stft_same(const torch::Tensor& x, int64_t n_fft, int64_t hop_length, int64_t win_length,
                        const torch::Tensor& window) {
  check_same_args("stft_same", n_fft, hop_length, win_length);
  const int64_t pad = (win_length - hop_length) / 2;
  torch::Tensor padded = F::pad(x.dim() == 1 ? x.unsqueeze(0) : x, F::PadFuncOptions({pad, pad}));
  torch::Tensor spec = torch::stft(padded, n_fft, hop_length, win_length, window, /*center=*/false, "reflect",
                                   false, true, true);
  return x.dim() == 1 ? spec.squeeze(0) : spec;
}

torch::Tensor istft_same(const torch::Tensor& spec_in, int64_t n_fft, int64_t hop_length, int64_t win_length,
                         const torch::Tensor& window) {
  check_same_args("istft_same", n_fft, hop_length, win_length);
  const bool batched = spec_in.dim() == 3;
  torch::Tensor spec = batched ? spec_in : spec_in.unsqueeze(0);  // (B, F, T)
  if (spec.dim() != 3) throw Error("istft_same: expected (F, T) or (B, F, T)");
  const int64_t pad = (win_length - hop_length) / 2;
  const int64_t frames = spec.size(-1);
  torch::Tensor frames_time = torch::fft::irfft(spec, n_fft, /*dim=*/1, "backward");  // (B, n_fft, T)
  frames_time = frames_time.narrow(1, 0, win_length) * window.view({1, -1, 1});
  const int64_t output_size = (frames - 1) * hop_length + win_length;
  auto fold = F::FoldFuncOptions({1, output_size}, {1, win_length}).stride({1, hop_length});
  torch::Tensor y = F::fold(frames_time, fold).squeeze(1).squeeze(1);  // (B, output_size)
  torch::Tensor env =
      F::fold(window.square().view({1, -1, 1}).expand({1, win_length, frames}), fold).reshape({output_size});
  y = y.narrow(-1, pad, output_size - 2 * pad);
  env = env.narrow(0, pad, output_size - 2 * pad);
  // A vanishing envelope means hop and window do not overlap enough. Checked on CPU only: on
  // a GPU it would cost a host sync per call, and every (window, hop) a model uses is also
  // run by the CPU tests.
  if (env.device().is_cpu() && (env <= 1e-11).any().item<bool>())
    throw Error("istft_same: window envelope vanishes (hop too large for the window)");
  y = y / env;
  return batched ? y : y.squeeze(0);
}

}  // namespace losatok::audio
