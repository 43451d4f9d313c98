// Multi-period and multi-resolution discriminators with weight-normalised convolutions.
#include "losatok/models/discriminators.h"

#include <torch/torch.h>

#include "losatok/audio/stft.h"
#include "losatok/core/error.h"

namespace losatok::models {

namespace nn = torch::nn;
namespace F = torch::nn::functional;

WNConv2dImpl::WNConv2dImpl(int64_t in, int64_t out, const Shape2& kernel, const Shape2& stride,
                           const Shape2& padding)
    : stride_{stride.first, stride.second}, padding_{padding.first, padding.second} {
  // PyTorch's default Conv2d initialisation, then g = ||v|| so the first forward equals it.
  nn::Conv2d init(nn::Conv2dOptions(in, out, {kernel.first, kernel.second}));
  torch::NoGradGuard no_grad;
  weight_v = register_parameter("weight_v", init->weight.detach().clone());
  weight_g = register_parameter("weight_g", at::norm_except_dim(weight_v, 2, 0).clone());
  bias = register_parameter("bias", init->bias.detach().clone());
}

torch::Tensor WNConv2dImpl::forward(const torch::Tensor& x) {
  const torch::Tensor w = at::_weight_norm(weight_v, weight_g, 0);
  return F::conv2d(x, w, F::Conv2dFuncOptions().bias(bias).stride(stride_).padding(padding_));
}

PeriodDiscriminatorImpl::PeriodDiscriminatorImpl(int p, const std::vector<int>& channels) : period(p) {
  if (p < 1) throw Error("period discriminator: period must be positive");
  if (channels.size() != 5) throw Error("period discriminator: needs 5 channel counts");
  convs = register_module("convs", nn::ModuleList());
  const int64_t ch[] = {1, channels[0], channels[1], channels[2], channels[3], channels[4]};
  for (int i = 0; i < 5; ++i)
    convs->push_back(WNConv2d(ch[i], ch[i + 1], Shape2{5, 1}, Shape2{i < 4 ? 3 : 1, 1}, Shape2{2, 0}));
  conv_post = register_module("conv_post", WNConv2d(ch[5], 1, Shape2{3, 1}, Shape2{1, 1}, Shape2{1, 0}));
}

std::pair<std::vector<DiscriminatorOutput>, std::vector<DiscriminatorOutput>> split_rows(
    const std::vector<DiscriminatorOutput>& outputs, int64_t first) {
  std::pair<std::vector<DiscriminatorOutput>, std::vector<DiscriminatorOutput>> out;
  for (const auto& o : outputs) {
    const int64_t rest = o.logits.size(0) - first;
    DiscriminatorOutput a{o.logits.narrow(0, 0, first), {}}, b{o.logits.narrow(0, first, rest), {}};
    for (const auto& f : o.features) {
      a.features.push_back(f.narrow(0, 0, first));
      b.features.push_back(f.narrow(0, first, rest));
    }
    out.first.push_back(std::move(a));
    out.second.push_back(std::move(b));
  }
  return out;
}

DiscriminatorOutput PeriodDiscriminatorImpl::forward(const torch::Tensor& wave) {
  torch::Tensor x = wave.unsqueeze(1);  // (B, 1, N)
  int64_t t = x.size(2);
  if (t % period != 0) {
    const int64_t pad = period - t % period;
    // Reflection needs pad < length; very short inputs fall back to zeros.
    if (pad < t)
      x = F::pad(x, F::PadFuncOptions({0, pad}).mode(torch::kReflect));
    else
      x = F::pad(x, F::PadFuncOptions({0, pad}));
    t += pad;
  }
  x = x.view({x.size(0), 1, t / period, period});
  DiscriminatorOutput out;
  for (std::size_t i = 0; i < convs->size(); ++i) {
    x = F::leaky_relu(convs[i]->as<WNConv2d>()->forward(x), F::LeakyReLUFuncOptions().negative_slope(0.1));
    if (i > 0) out.features.push_back(x);
  }
  x = conv_post->forward(x);
  out.features.push_back(x);
  out.logits = x.flatten(1);
  return out;
}

ResolutionDiscriminatorImpl::ResolutionDiscriminatorImpl(
    int window, int channels, const std::vector<std::pair<double, double>>& fractions)
    : window_length(window) {
  const int64_t bins = window / 2 + 1;
  for (const auto& [a, b] : fractions)
    bands.emplace_back(static_cast<int64_t>(a * bins), static_cast<int64_t>(b * bins));
  band_convs = register_module("band_convs", nn::ModuleList());
  for (std::size_t b = 0; b < bands.size(); ++b) {
    nn::ModuleList stack;
    stack->push_back(WNConv2d(2, channels, Shape2{3, 9}, Shape2{1, 1}, Shape2{1, 4}));
    for (int i = 0; i < 3; ++i)
      stack->push_back(WNConv2d(channels, channels, Shape2{3, 9}, Shape2{1, 2}, Shape2{1, 4}));
    stack->push_back(WNConv2d(channels, channels, Shape2{3, 3}, Shape2{1, 1}, Shape2{1, 1}));
    band_convs->push_back(stack);
  }
  conv_post = register_module("conv_post", WNConv2d(channels, 1, Shape2{3, 3}, Shape2{1, 1}, Shape2{1, 1}));
}

DiscriminatorOutput ResolutionDiscriminatorImpl::forward(const torch::Tensor& wave) {
  torch::Tensor x = wave - wave.mean(-1, true);
  x = 0.8 * x / (std::get<0>(x.abs().max(-1, true)) + 1e-9);
  const torch::Tensor window = audio::hann_window(window_length, x.options());
  const torch::Tensor spec = audio::stft(x, window_length, window_length / 4, window_length, window, true);
  // (B, F, T) complex -> (B, 2, T, F)
  const torch::Tensor ri = torch::view_as_real(spec).permute({0, 3, 2, 1});
  DiscriminatorOutput out;
  std::vector<torch::Tensor> outs;
  for (std::size_t b = 0; b < bands.size(); ++b) {
    torch::Tensor h = ri.narrow(3, bands[b].first, bands[b].second - bands[b].first);
    auto& stack = *band_convs[b]->as<nn::ModuleList>();
    for (std::size_t i = 0; i < stack.size(); ++i) {
      h = F::leaky_relu(stack[i]->as<WNConv2d>()->forward(h), F::LeakyReLUFuncOptions().negative_slope(0.1));
      if (i > 0) out.features.push_back(h);
    }
    outs.push_back(h);
  }
  torch::Tensor h = conv_post->forward(torch::cat(outs, -1));
  out.features.push_back(h);
  out.logits = h.flatten(1);
  return out;
}

MultiPeriodDiscriminatorImpl::MultiPeriodDiscriminatorImpl(const std::vector<int>& periods,
                                                           const std::vector<int>& channels) {
  discriminators = register_module("discriminators", nn::ModuleList());
  for (int p : periods) discriminators->push_back(PeriodDiscriminator(p, channels));
}

std::vector<DiscriminatorOutput> MultiPeriodDiscriminatorImpl::forward(const torch::Tensor& wave) {
  std::vector<DiscriminatorOutput> out;
  for (const auto& d : *discriminators) out.push_back(d->as<PeriodDiscriminator>()->forward(wave));
  return out;
}

MultiResolutionDiscriminatorImpl::MultiResolutionDiscriminatorImpl(const std::vector<int>& windows,
                                                                   int channels) {
  const std::vector<std::pair<double, double>> bands = {
      {0.0, 0.1}, {0.1, 0.25}, {0.25, 0.5}, {0.5, 0.75}, {0.75, 1.0}};
  discriminators = register_module("discriminators", nn::ModuleList());
  for (int w : windows) discriminators->push_back(ResolutionDiscriminator(w, channels, bands));
}

std::vector<DiscriminatorOutput> MultiResolutionDiscriminatorImpl::forward(const torch::Tensor& wave) {
  std::vector<DiscriminatorOutput> out;
  for (const auto& d : *discriminators) out.push_back(d->as<ResolutionDiscriminator>()->forward(wave));
  return out;
}

}  // namespace losatok::models
