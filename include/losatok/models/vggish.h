// VGGish (Hershey et al., ICASSP 2017), the embedding the Frechet Audio Distance is computed in
// (docs/method.md, "Evaluation"): the log-mel front end of the TensorFlow release
// (vggish_input / mel_features) and the conv stack, with the key names of torchvggish's
// `vggish-10086976.pth`, so that file loads as it is. Widths come from the file's shapes.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/pimpl.h>

#include <string>
#include <vector>

namespace losatok::models {

// The front end's constants (vggish_params): 16 kHz, 25 ms windows every 10 ms in a 512-point
// FFT, 64 HTK mels from 125 to 7500 Hz, log(mel + 0.01), examples of 96 frames (0.96 s) hop 96.
struct VggishFrontEnd {
  static constexpr int kSampleRate = 16000;
  static constexpr int kWindow = 400, kHop = 160, kFft = 512;
  static constexpr int kMels = 64;
  static constexpr double kMinHz = 125.0, kMaxHz = 7500.0, kLogOffset = 0.01;
  static constexpr int kExampleFrames = 96, kExampleHop = 96;
};

// mel_features.spectrogram_to_mel_matrix: (n_fft/2 + 1, n_mels) float64, triangles in the HTK
// mel domain (1127 ln(1 + f/700)), the DC bin zeroed.
torch::Tensor vggish_mel_matrix(int n_fft = VggishFrontEnd::kFft, int n_mels = VggishFrontEnd::kMels,
                                int sample_rate = VggishFrontEnd::kSampleRate,
                                double lower_hz = VggishFrontEnd::kMinHz,
                                double upper_hz = VggishFrontEnd::kMaxHz);

// waveform_to_examples for 16 kHz mono (N) -> (E, 96, 64) float32, computed in float64 as the
// numpy original; E = 0 for clips shorter than one example (0.975 s).
torch::Tensor vggish_examples(const torch::Tensor& wave_16k);

// The network: features (conv 3x3 + ReLU, max-pool 2x2 after the 1st, 2nd, 4th and 6th conv)
// and embeddings (Linear + ReLU x 3), module indices as torchvggish's nn.Sequential.
struct VggishImpl : torch::nn::Module {
  // channels: the six conv widths (64, 128, 256, 256, 512, 512); fc: the hidden width (4096).
  VggishImpl(const std::vector<int64_t>& channels, int64_t fc, int64_t embedding_dim);
  // examples (E, 96, 64) -> (E, embedding_dim). FAD tools drop the last ReLU (`final_relu`
  // false) and the PCA post-processing (not implemented).
  torch::Tensor forward(const torch::Tensor& examples, bool final_relu = false);
  torch::nn::Sequential features{nullptr}, embeddings{nullptr};
  int64_t embedding_dim;
};
TORCH_MODULE(Vggish);

// Reads torchvggish's state dict (vggish-10086976.pth, or any file read_weights reads; the PCA
// parameters, when present, are ignored) onto `device`, frozen in eval mode. A missing file is an
// error saying where the official one comes from.
Vggish load_vggish(const std::string& path, const torch::Device& device);

}  // namespace losatok::models
