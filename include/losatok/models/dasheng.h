// The frozen semantic encoder of docs/method.md: a Dasheng / MiDashengLM audio ViT on the
// dB log-mel, parameter names as the MiDashengLM checkpoints' `audio_encoder.*`.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include <memory>

#include "losatok/audio/mel.h"
#include "losatok/models/model_config.h"

namespace losatok::models {

// Multi-head self-attention with one fused q|k|v projection (rows q, then k, then v).
struct DashengAttentionImpl : torch::nn::Module {
  DashengAttentionImpl(int dim, int num_heads, bool qkv_bias);
  // x (B, N, D); key_mask (B, N) bool, true = attend, or undefined.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& key_mask = {});

  int num_heads;
  torch::nn::Linear qkv{nullptr}, proj{nullptr};
};
TORCH_MODULE(DashengAttention);

struct DashengMlpImpl : torch::nn::Module {
  DashengMlpImpl(int dim, int hidden);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(DashengMlp);

// Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x)).
struct DashengBlockImpl : torch::nn::Module {
  explicit DashengBlockImpl(const EncoderConfig& c);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& key_mask = {});
  // The same without autograd, as one operation (PyTorch's TransformerEncoderLayer fast path,
  // aten::_transformer_encoder_layer_fwd); padding (B, N) bool, true = a padded key (or undefined).
  torch::Tensor forward_inference(const torch::Tensor& x, const torch::Tensor& padding = {});
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr};
  DashengAttention attn{nullptr};
  DashengMlp mlp{nullptr};
};
TORCH_MODULE(DashengBlock);

// Holds the Conv2d under the checkpoint name `patch_embed.proj`.
struct DashengPatchEmbedImpl : torch::nn::Module {
  DashengPatchEmbedImpl(int n_mels, int patch_frames, int dim);
  torch::Tensor forward(const torch::Tensor& x) { return proj->forward(x); }
  torch::nn::Conv2d proj{nullptr};
};
TORCH_MODULE(DashengPatchEmbed);

struct DashengEncoderImpl : torch::nn::Module {
  DashengEncoderImpl(const EncoderConfig& config, const MelConfig& mel);

  // wave (B, N) 16 kHz -> (B, T, D), T = floor(mel frames / patch_frames). `lengths` (B)
  // int64 valid samples per clip of a zero-padded batch, or undefined when all are full.
  torch::Tensor forward(const torch::Tensor& wave, const torch::Tensor& lengths = {});
  // The same from the dB log-mel (B, n_mels, F); token_mask (B, T) bool or undefined.
  torch::Tensor forward_mel(const torch::Tensor& mel, const torch::Tensor& token_mask = {});
  // (B, T) bool: token t is valid when t < floor(length / samples_per_token) (the reference's
  // rule).
  torch::Tensor token_mask(const torch::Tensor& lengths, int64_t num_tokens) const;
  int64_t samples_per_token() const { return static_cast<int64_t>(mel_.hop_length) * config_.patch_frames; }
  const audio::LogMel& frontend() const { return *frontend_; }

  torch::nn::BatchNorm2d init_bn{nullptr};  // over mel bins; always uses its running stats
  DashengPatchEmbed patch_embed{nullptr};
  torch::Tensor time_pos_embed;  // (1, D, 1, patches_per_chunk)
  torch::Tensor freq_pos_embed;  // (1, D, 1, 1)
  torch::nn::ModuleList blocks{nullptr};
  torch::nn::LayerNorm norm{nullptr};

 private:
  EncoderConfig config_;
  MelConfig mel_;
  std::shared_ptr<audio::LogMel> frontend_;
};
TORCH_MODULE(DashengEncoder);

}  // namespace losatok::models
