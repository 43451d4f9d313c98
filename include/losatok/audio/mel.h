// Log-mel front ends (docs/method.md): the Dasheng encoder's dB mel and the Vocos log mel,
// numerically matching torchaudio 0.13's MelSpectrogram (+ AmplitudeToDB).
#pragma once

#include <torch/types.h>

#include <mutex>
#include <string>

#include "losatok/audio/mel_config.h"

namespace losatok::audio {

// torchaudio.functional.melscale_fbanks: (n_freqs, n_mels). mel_scale "htk" | "slaney",
// norm "none" | "slaney" (librosa.filters.mel's defaults are slaney / slaney).
torch::Tensor melscale_fbanks(int64_t n_freqs, double f_min, double f_max, int64_t n_mels,
                              int64_t sample_rate, const std::string& mel_scale = "htk",
                              const std::string& norm = "none");

class LogMel {
 public:
  explicit LogMel(const MelConfig& config);

  // (N) -> (n_mels, T) or (B, N) -> (B, n_mels, T), float32 on the input's device. Any
  // dB floor (top_db) is taken per clip, so results do not depend on the batch.
  torch::Tensor operator()(const torch::Tensor& wave) const;

  const MelConfig& config() const { return config_; }

 private:
  // Window and filterbank on `device`, created once per device.
  std::pair<torch::Tensor, torch::Tensor> buffers(const torch::Device& device) const;

  MelConfig config_;
  torch::Tensor window_, fbanks_;  // CPU copies
  mutable std::mutex mutex_;
  mutable torch::Tensor dev_window_, dev_fbanks_;
};

}  // namespace losatok::audio
