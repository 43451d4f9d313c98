// PANNs CNN14 (Kong et al., IEEE/ACM TASLP 2020), the AudioSet tagger whose outputs the KL and
// Inception Score and whose 2048-d embedding the PANNs Frechet distance are computed from
// (docs/method.md, "Evaluation"). Key names are those of the released checkpoints
// (`Cnn14_16k_mAP=0.438.pth`, `Cnn14_mAP=0.431.pth`: {"model": state_dict, ...}), so they load as
// they are; widths come from the file's shapes, the front end from its STFT size.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <memory>
#include <string>
#include <vector>

namespace losatok::models {

// The front end (audio/torchlibrosa.h): torchlibrosa's centred power STFT (periodic Hann,
// reflect padding) and librosa's Slaney mel filters, 10 log10(max(x, 1e-10)) without a dB range.
struct Cnn14FrontEnd {
  int sample_rate = 32000;
  int window = 1024, hop = 320, mel_bins = 64;
  double fmin = 50.0, fmax = 14000.0;
  // The 16 kHz variant (window 512, hop 160, fmax 8000) and the 32 kHz original.
  static Cnn14FrontEnd variant_16k() { return {16000, 512, 160, 64, 50.0, 8000.0}; }
  static Cnn14FrontEnd variant_32k() { return {}; }
};

// conv1 / bn1 / ReLU / conv2 / bn2 / ReLU / average pool.
struct Cnn14ConvBlockImpl : torch::nn::Module {
  Cnn14ConvBlockImpl(int64_t in, int64_t out);
  torch::Tensor forward(const torch::Tensor& x, int64_t pool);
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr}, bn2{nullptr};
};
TORCH_MODULE(Cnn14ConvBlock);

struct Cnn14Output {
  torch::Tensor embedding;  // (B, fc) after fc1 + ReLU: the "2048" features
  torch::Tensor logits;     // (B, classes) before the sigmoid
  torch::Tensor clipwise;   // (B, classes) sigmoid(logits), the tagger's output
};

struct Cnn14Impl : torch::nn::Module {
  // channels: the six block widths (64 ... 2048); fc: fc1's width (2048); classes: 527.
  Cnn14Impl(const Cnn14FrontEnd& front_end, const std::vector<int64_t>& channels, int64_t fc,
            int64_t classes);
  // The log-mel (B, T, mel_bins) of waves (B, N) at front_end.sample_rate.
  torch::Tensor log_mel(const torch::Tensor& wave) const;
  // waves (B, N) -> outputs; clips of one batch share their length (padding would change the
  // time pooling), so callers batch equal lengths or pass one clip at a time.
  Cnn14Output forward(const torch::Tensor& wave);

  Cnn14FrontEnd front_end;
  // The STFT kernels and the filterbank, recomputed (not registered: the file's copies are checked
  // against them, not loaded).
  torch::Tensor conv_real, conv_imag, mel_w;
  torch::nn::BatchNorm2d bn0{nullptr};
  Cnn14ConvBlock conv_block1{nullptr}, conv_block2{nullptr}, conv_block3{nullptr}, conv_block4{nullptr},
      conv_block5{nullptr}, conv_block6{nullptr};
  torch::nn::Linear fc1{nullptr}, fc_audioset{nullptr};
};
TORCH_MODULE(Cnn14);

// Reads a released CNN14 checkpoint onto `device`, frozen in eval mode. The variant is the one
// whose STFT size matches the file's `spectrogram_extractor.stft.conv_real.weight`; the file's
// STFT kernels and `logmel_extractor.melW` are recomputed and checked against the file's when
// present (kernels or a filterbank for another size, rate or band are an error naming the file).
Cnn14 load_cnn14(const std::string& path, const torch::Device& device);

}  // namespace losatok::models
