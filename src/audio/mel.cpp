// Mel filterbank and log-mel front ends.
#include "losatok/audio/mel.h"

#include <torch/torch.h>

#include "losatok/audio/stft.h"
#include "losatok/core/config.h"
#include "losatok/core/error.h"

namespace losatok::audio {

namespace {

// Slaney's Auditory Toolbox scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above.
constexpr double kSlaneyHzPerMel = 200.0 / 3.0, kSlaneyBreakHz = 1000.0;
const double kSlaneyBreakMel = kSlaneyBreakHz / kSlaneyHzPerMel, kSlaneyLogStep = std::log(6.4) / 27.0;

double hz_to_mel(double f, bool slaney) {
  if (!slaney) return 2595.0 * std::log10(1.0 + f / 700.0);
  if (f < kSlaneyBreakHz) return f / kSlaneyHzPerMel;
  return kSlaneyBreakMel + std::log(f / kSlaneyBreakHz) / kSlaneyLogStep;
}

torch::Tensor mel_to_hz(const torch::Tensor& m, bool slaney) {
  if (!slaney) return 700.0 * (torch::pow(10.0, m / 2595.0) - 1.0);
  return torch::where(m >= kSlaneyBreakMel,
                      kSlaneyBreakHz * torch::exp(kSlaneyLogStep * (m - kSlaneyBreakMel)),
                      kSlaneyHzPerMel * m);
}

}  // namespace

torch::Tensor melscale_fbanks(int64_t n_freqs, double f_min, double f_max, int64_t n_mels,
                              int64_t sample_rate, const std::string& mel_scale, const std::string& norm) {
  if (mel_scale != "htk" && mel_scale != "slaney")
    throw Error("mel filterbank: unknown scale '" + mel_scale + "'");
  if (norm != "none" && norm != "slaney") throw Error("mel filterbank: unknown norm '" + norm + "'");
  const bool slaney = mel_scale == "slaney";
  // Same float32 operations, in the same order, as torchaudio 0.13.
  const auto opts = torch::TensorOptions().dtype(torch::kFloat32);
  torch::Tensor all_freqs = torch::linspace(0, static_cast<double>(sample_rate / 2), n_freqs, opts);
  const double m_min = hz_to_mel(f_min, slaney), m_max = hz_to_mel(f_max, slaney);
  torch::Tensor m_pts = torch::linspace(m_min, m_max, n_mels + 2, opts);
  torch::Tensor f_pts = mel_to_hz(m_pts, slaney);
  torch::Tensor f_diff = f_pts.slice(0, 1) - f_pts.slice(0, 0, -1);    // (n_mels + 1)
  torch::Tensor slopes = f_pts.unsqueeze(0) - all_freqs.unsqueeze(1);  // (n_freqs, n_mels + 2)
  torch::Tensor down = -1.0 * slopes.slice(1, 0, -2) / f_diff.slice(0, 0, -1);
  torch::Tensor up = slopes.slice(1, 2) / f_diff.slice(0, 1);
  torch::Tensor fb = torch::clamp_min(torch::min(down, up), 0.0);
  if (norm == "slaney") fb = fb * (2.0 / (f_pts.slice(0, 2) - f_pts.slice(0, 0, n_mels))).unsqueeze(0);
  return fb;
}

LogMel::LogMel(const MelConfig& config) : config_(config) {
  config::validate_all(config_, "frontend");
  window_ = hann_window(config_.win_length);
  fbanks_ = melscale_fbanks(config_.n_freqs(), config_.f_min, config_.effective_f_max(), config_.n_mels,
                            config_.sample_rate, config_.mel_scale, config_.mel_norm);
}

std::pair<torch::Tensor, torch::Tensor> LogMel::buffers(const torch::Device& device) const {
  if (device.is_cpu()) return {window_, fbanks_};
  std::lock_guard<std::mutex> lock(mutex_);
  if (!dev_window_.defined() || dev_window_.device() != device) {
    dev_window_ = window_.to(device);
    dev_fbanks_ = fbanks_.to(device);
  }
  return {dev_window_, dev_fbanks_};
}

torch::Tensor LogMel::operator()(const torch::Tensor& wave) const {
  if (wave.dim() != 1 && wave.dim() != 2)
    throw Error("log-mel: expected a waveform (N) or (B, N), got " + std::to_string(wave.dim()) + " dims");
  const auto [window, fbanks] = buffers(wave.device());
  torch::Tensor x = wave.to(torch::kFloat32);
  torch::Tensor spec =
      stft(x, config_.n_fft, config_.hop_length, config_.win_length, window, config_.center).abs();
  if (config_.power == 2.0) spec = spec.pow(2.0);
  // (…, F, T) -> (…, T, F) @ (F, M) -> (…, M, T), as torchaudio.transforms.MelScale.
  torch::Tensor mel = torch::matmul(spec.transpose(-1, -2), fbanks).transpose(-1, -2);
  if (config_.scale == "log") return torch::log(torch::clamp_min(mel, config_.floor));
  if (config_.scale == "log10") return torch::log10(torch::clamp_min(mel, config_.floor));
  torch::Tensor db = 10.0 * torch::log10(torch::clamp_min(mel, config_.floor));
  if (config_.top_db > 0) {
    // Per clip: the max over (mels, frames) of each batch element.
    torch::Tensor peak = db.dim() == 2 ? db.max() : std::get<0>(db.flatten(1).max(1)).view({-1, 1, 1});
    db = torch::max(db, peak - config_.top_db);
  }
  return db;
}

}  // namespace losatok::audio
