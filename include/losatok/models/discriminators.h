// The tokenizer's GAN discriminators (docs/method.md, "Tokenizer", after Vocos): a multi-period
// discriminator (HiFi-GAN periods 2, 3, 5, 7, 11) and a multi-resolution discriminator (complex
// STFT at three window lengths, five frequency sub-bands), all convolutions weight-normalised
// with PyTorch's `weight_g` / `weight_v` parameter names.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>

#include <utility>
#include <vector>

namespace losatok::models {

// Conv2d with weight normalisation over every dimension but the output channels:
// weight = weight_g * weight_v / ||weight_v|| (torch.nn.utils.weight_norm, dim 0).
using Shape2 = std::pair<int64_t, int64_t>;
struct WNConv2dImpl : torch::nn::Module {
  WNConv2dImpl(int64_t in, int64_t out, const Shape2& kernel, const Shape2& stride, const Shape2& padding);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight_g, weight_v, bias;
  std::vector<int64_t> stride_, padding_;
};
TORCH_MODULE(WNConv2d);

// One discriminator's output: logits and the feature maps feature matching compares.
struct DiscriminatorOutput {
  torch::Tensor logits;
  std::vector<torch::Tensor> features;
};

// Outputs of one pass over a batch made of two (rows [0, first) and [first, B)), as two
// (views): a discriminator runs real and generated audio in one pass, half the operations.
std::pair<std::vector<DiscriminatorOutput>, std::vector<DiscriminatorOutput>> split_rows(
    const std::vector<DiscriminatorOutput>& outputs, int64_t first);

// HiFi-GAN period discriminator: the waveform folded into (T / p, p), five (5, 1) convolutions
// with stride 3 along time (channels 1 -> 32 -> 128 -> 512 -> 1024 -> 1024 by default),
// LeakyReLU 0.1, post conv (3, 1).
struct PeriodDiscriminatorImpl : torch::nn::Module {
  PeriodDiscriminatorImpl(int period, const std::vector<int>& channels = {32, 128, 512, 1024, 1024});
  DiscriminatorOutput forward(const torch::Tensor& wave);  // (B, N)
  int period;
  torch::nn::ModuleList convs{nullptr};
  WNConv2d conv_post{nullptr};
};
TORCH_MODULE(PeriodDiscriminator);

// Vocos / DAC resolution discriminator: DC removed and peak-normalised waveform -> complex STFT
// (window `window_length`, hop a quarter) as 2 channels -> five frequency bands, each through
// five convolutions -> concatenated along frequency -> post conv.
struct ResolutionDiscriminatorImpl : torch::nn::Module {
  ResolutionDiscriminatorImpl(int window_length, int channels,
                              const std::vector<std::pair<double, double>>& bands);
  DiscriminatorOutput forward(const torch::Tensor& wave);
  int window_length;
  std::vector<std::pair<int64_t, int64_t>> bands;  // frequency-bin ranges
  torch::nn::ModuleList band_convs{nullptr};       // one ModuleList of 5 convs per band
  WNConv2d conv_post{nullptr};
};
TORCH_MODULE(ResolutionDiscriminator);

// `discriminators.{i}` of each kind, as in Vocos.
struct MultiPeriodDiscriminatorImpl : torch::nn::Module {
  MultiPeriodDiscriminatorImpl(const std::vector<int>& periods,
                               const std::vector<int>& channels = {32, 128, 512, 1024, 1024});
  std::vector<DiscriminatorOutput> forward(const torch::Tensor& wave);
  torch::nn::ModuleList discriminators{nullptr};
};
TORCH_MODULE(MultiPeriodDiscriminator);

struct MultiResolutionDiscriminatorImpl : torch::nn::Module {
  MultiResolutionDiscriminatorImpl(const std::vector<int>& windows, int channels);
  std::vector<DiscriminatorOutput> forward(const torch::Tensor& wave);
  torch::nn::ModuleList discriminators{nullptr};
};
TORCH_MODULE(MultiResolutionDiscriminator);

}  // namespace losatok::models
