// Vocos backbone and iSTFT head.
#include "losatok/models/vocos.h"

#include <torch/torch.h>

#include "losatok/audio/stft.h"
#include "losatok/models/checkpointing.h"
#include "losatok/models/init.h"
#include "losatok/models/layers.h"

namespace losatok::models {

namespace nn = torch::nn;

ConvNeXtBlockImpl::ConvNeXtBlockImpl(int dim, int intermediate_dim, int kernel_size, double layer_scale,
                                     double eps) {
  dwconv = register_module(
      "dwconv", nn::Conv1d(nn::Conv1dOptions(dim, dim, kernel_size).padding(kernel_size / 2).groups(dim)));
  norm = register_module("norm", nn::LayerNorm(nn::LayerNormOptions({dim}).eps(eps)));
  pwconv1 = register_module("pwconv1", nn::Linear(dim, intermediate_dim));
  pwconv2 = register_module("pwconv2", nn::Linear(intermediate_dim, dim));
  gamma = register_parameter("gamma", torch::full({dim}, layer_scale));
}

torch::Tensor ConvNeXtBlockImpl::forward(const torch::Tensor& x) {
  torch::Tensor h = dwconv->forward(x).transpose(1, 2);  // (B, T, C)
  h = apply_linear(pwconv2, torch::gelu(apply_linear(pwconv1, norm->forward(h))));
  return x + (gamma * h).transpose(1, 2);
}

VocosBackboneImpl::VocosBackboneImpl(int input_channels, const DecoderConfig& c)
    : grad_checkpointing_(c.grad_checkpointing) {
  c.validate();
  embed = register_module(
      "embed",
      nn::Conv1d(nn::Conv1dOptions(input_channels, c.dim, c.kernel_size).padding(c.kernel_size / 2)));
  norm = register_module("norm", nn::LayerNorm(nn::LayerNormOptions({c.dim}).eps(c.norm_eps)));
  const double layer_scale = c.layer_scale_init > 0 ? c.layer_scale_init : 1.0 / std::max(1, c.num_layers);
  convnext = register_module("convnext", nn::ModuleList());
  for (int i = 0; i < c.num_layers; ++i)
    convnext->push_back(ConvNeXtBlock(c.dim, c.intermediate_dim, c.kernel_size, layer_scale, c.norm_eps));
  final_layer_norm =
      register_module("final_layer_norm", nn::LayerNorm(nn::LayerNormOptions({c.dim}).eps(c.norm_eps)));
  init_trunc_normal(*this);
}

torch::Tensor VocosBackboneImpl::forward(const torch::Tensor& x) {
  torch::Tensor h = norm->forward(embed->forward(x).transpose(1, 2)).transpose(1, 2);  // (B, C, T)
  for (const auto& block : *convnext) {
    auto* b = block->as<ConvNeXtBlock>();
    if (grad_checkpointing_ && is_training() && torch::GradMode::is_enabled() && h.requires_grad())
      h = checkpoint([b](const torch::Tensor& in) { return b->forward(in); }, h);
    else
      h = b->forward(h);
  }
  return final_layer_norm->forward(h.transpose(1, 2));
}

IstftHeadImpl::IstftHeadImpl(int dim, const DecoderConfig& c)
    : n_fft_(c.n_fft), hop_length_(c.hop_length), mag_max_(c.mag_max) {
  out = register_module("out", nn::Linear(dim, c.n_fft + 2));
}

torch::Tensor IstftHeadImpl::forward(const torch::Tensor& x) {
  // The iSTFT runs in float32 whatever the autocast dtype of the backbone.
  const torch::Tensor h = apply_linear(out, x).transpose(1, 2).to(torch::kFloat32);  // (B, n_fft + 2, T)
  const auto parts = h.chunk(2, 1);
  const torch::Tensor mag = torch::exp(parts[0]).clamp_max(mag_max_);
  const torch::Tensor spec = torch::complex(mag * torch::cos(parts[1]), mag * torch::sin(parts[1]));
  const torch::Tensor window = audio::hann_window(n_fft_, h.options());
  return audio::istft_same(spec, n_fft_, hop_length_, n_fft_, window);
}

VocosDecoderImpl::VocosDecoderImpl(int input_channels, const DecoderConfig& c) {
  backbone = register_module("backbone", VocosBackbone(input_channels, c));
  head = register_module("head", IstftHead(c.dim, c));
}

}  // namespace losatok::models
