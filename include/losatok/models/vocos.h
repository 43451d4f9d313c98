// The Vocos decoder (docs/method.md, "Tokenizer"): ConvNeXt backbone and iSTFT head, named as the
// reference's `dasheng_tokenizer.decoder.{backbone,head}`.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include "losatok/models/model_config.h"

namespace losatok::models {

// depthwise conv -> LayerNorm -> Linear -> GELU -> Linear -> layer scale `gamma`, residual.
struct ConvNeXtBlockImpl : torch::nn::Module {
  ConvNeXtBlockImpl(int dim, int intermediate_dim, int kernel_size, double layer_scale, double eps);
  torch::Tensor forward(const torch::Tensor& x);  // (B, C, T) -> (B, C, T)
  torch::nn::Conv1d dwconv{nullptr};
  torch::nn::LayerNorm norm{nullptr};
  torch::nn::Linear pwconv1{nullptr}, pwconv2{nullptr};
  torch::Tensor gamma;  // (C)
};
TORCH_MODULE(ConvNeXtBlock);

struct VocosBackboneImpl : torch::nn::Module {
  VocosBackboneImpl(int input_channels, const DecoderConfig& c);
  torch::Tensor forward(const torch::Tensor& x);  // (B, C_in, T) -> (B, T, dim)
  torch::nn::Conv1d embed{nullptr};
  torch::nn::LayerNorm norm{nullptr};
  torch::nn::ModuleList convnext{nullptr};
  torch::nn::LayerNorm final_layer_norm{nullptr};

 private:
  bool grad_checkpointing_ = false;  // DecoderConfig::grad_checkpointing
};
TORCH_MODULE(VocosBackbone);

// Linear -> log-magnitude | phase -> mag = min(exp(.), mag_max) -> "same"-padded iSTFT.
struct IstftHeadImpl : torch::nn::Module {
  IstftHeadImpl(int dim, const DecoderConfig& c);
  torch::Tensor forward(const torch::Tensor& x);  // (B, T, dim) -> (B, T * hop_length)
  torch::nn::Linear out{nullptr};

 private:
  int n_fft_, hop_length_;
  double mag_max_;
};
TORCH_MODULE(IstftHead);

struct VocosDecoderImpl : torch::nn::Module {
  VocosDecoderImpl(int input_channels, const DecoderConfig& c);
  torch::Tensor forward(const torch::Tensor& x) { return head->forward(backbone->forward(x)); }
  VocosBackbone backbone{nullptr};
  IstftHead head{nullptr};
};
TORCH_MODULE(VocosDecoder);

}  // namespace losatok::models
