// The generation model of docs/method.md, "DiT": a DiT over 1-D tokenizer latents (AdaLN time
// modulation, self-attention with RoPE and q/k LayerNorm, cross-attention to the condition
// sequence, GEGLU MLP, optional U-ViT long skips, zero-initialised gates and output), the
// built-in text encoder, and the root module that holds both with the latent statistics.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include "losatok/models/dit_config.h"

namespace losatok::models {

// Rotary position embedding (rotate-half pairing) of x (B, H, T, Dh) at positions 0..T-1.
torch::Tensor apply_rope(const torch::Tensor& x, double theta);

// Sinusoidal features (B, dim) of `t` (B): [cos(t f_k), sin(t f_k)], f_k = 10000^(-k / (dim/2)).
torch::Tensor timestep_features(const torch::Tensor& t, int64_t dim);

// Multi-head attention. Self-attention (context_dim 0): fused `qkv`, RoPE when rope_theta > 0.
// Cross-attention: `q` from x, `kv` from the context (no positions). q/k LayerNorm per head.
struct AttentionImpl : torch::nn::Module {
  AttentionImpl(int dim, int heads, int context_dim, bool qk_norm, double rope_theta);
  // x (B, T, dim); context (B, L, context_dim) for cross-attention (undefined: self);
  // key_mask (B, keys) bool, true = attend (undefined: all).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& context = {},
                        const torch::Tensor& key_mask = {});
  int heads;
  double rope_theta;
  torch::nn::Linear qkv{nullptr}, q{nullptr}, kv{nullptr}, proj{nullptr};
  torch::nn::LayerNorm q_norm{nullptr}, k_norm{nullptr};
};
TORCH_MODULE(Attention);

// GEGLU feed-forward: out(a * gelu(g)) with [a, g] = proj(x).
struct GegluMlpImpl : torch::nn::Module {
  GegluMlpImpl(int dim, int hidden);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Linear proj{nullptr}, out{nullptr};
};
TORCH_MODULE(GegluMlp);

// One DiT block. `adaln` (zero-initialised) maps the time embedding to shift / scale / gate of
// the self-attention and the MLP; cross-attention is a plain pre-norm residual. A block that
// takes a U-ViT long skip owns its `skip_norm` + `skip_linear` (concat -> width).
struct DiTBlockImpl : torch::nn::Module {
  DiTBlockImpl(const DiTConfig& c, int cond_dim, bool takes_skip);
  // x (B, T, W); t (B, W) time embedding; mask (B, T) bool; cond (B, L, C) + cond_mask (B, L);
  // skip (B, T, W) or undefined.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& mask,
                        const torch::Tensor& cond, const torch::Tensor& cond_mask, const torch::Tensor& skip);
  torch::nn::LayerNorm norm1{nullptr}, norm_cross{nullptr}, norm2{nullptr}, skip_norm{nullptr};
  Attention attn{nullptr}, cross_attn{nullptr};
  GegluMlp mlp{nullptr};
  torch::nn::Linear adaln{nullptr}, skip_linear{nullptr};
};
TORCH_MODULE(DiTBlock);

// The backbone. Input channels: latent_dim, plus `extra_in` conditioning channels concatenated
// frame by frame (TTS: the audio prompt's latents and the frame-aligned text).
struct DiTImpl : torch::nn::Module {
  DiTImpl(const DiTConfig& c, int cond_dim, int extra_in);
  // x (B, T, latent_dim + extra_in), sigma (B) in [0, 1] -> velocity (B, T, latent_dim), zero on
  // padded frames.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& sigma, const torch::Tensor& mask,
                        const torch::Tensor& cond, const torch::Tensor& cond_mask);
  DiTConfig config;
  torch::nn::Linear input_proj{nullptr}, final_adaln{nullptr}, final_proj{nullptr};
  torch::nn::Sequential time_embed{nullptr};  // Linear, SiLU, Linear
  torch::nn::ModuleList blocks{nullptr};
  torch::nn::LayerNorm final_norm{nullptr};
};
TORCH_MODULE(DiT);

// A pre-norm transformer block of the text encoder (self-attention with RoPE, GEGLU).
struct TextBlockImpl : torch::nn::Module {
  TextBlockImpl(const TextEncoderConfig& c);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask);
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr};
  Attention attn{nullptr};
  GegluMlp mlp{nullptr};
};
TORCH_MODULE(TextBlock);

// Byte (or phoneme-byte) tokens (B, L) int64 + mask (B, L) -> (B, L, width), zero on padding.
struct TextEncoderImpl : torch::nn::Module {
  explicit TextEncoderImpl(const TextEncoderConfig& c);
  torch::Tensor forward(const torch::Tensor& tokens, const torch::Tensor& mask);
  torch::nn::Embedding embed{nullptr};
  torch::nn::ModuleList blocks{nullptr};
  torch::nn::LayerNorm norm{nullptr};
};
TORCH_MODULE(TextEncoder);

// The trained generation model, as checkpoints name it: `dit.*`, `text_encoder.*` (when the
// condition is text), `null_cond` (the dropped condition of classifier-free guidance) and the
// buffers `latent_mean`, `latent_std` (per latent dimension) and `frames_per_token` (TTS
// speaking rate).
struct DiTModelImpl : torch::nn::Module {
  // cond_dim: width of the condition sequence (the text encoder's, or the cached embeddings');
  // tts: the input also takes the prompt latents and the frame-aligned text.
  DiTModelImpl(const DiTConfig& dit, const TextEncoderConfig& text, bool text_condition, int cond_dim,
               bool tts);
  // The model's velocity for noisy latents x (B, T, D) at sigma (B). prompt (B, T, D) and
  // aligned (B, T, C) are the TTS inputs (undefined otherwise).
  torch::Tensor velocity(const torch::Tensor& x, const torch::Tensor& sigma, const torch::Tensor& mask,
                         const torch::Tensor& cond, const torch::Tensor& cond_mask,
                         const torch::Tensor& prompt = {}, const torch::Tensor& aligned = {});
  // Rows of cond (B, L, C) where drop (B) is true become the null condition.
  torch::Tensor drop_condition(const torch::Tensor& cond, const torch::Tensor& drop) const;
  torch::Tensor normalize(const torch::Tensor& z) const { return (z - latent_mean) / latent_std; }
  torch::Tensor denormalize(const torch::Tensor& z) const { return z * latent_std + latent_mean; }

  bool tts;
  int cond_dim;
  DiT dit{nullptr};
  TextEncoder text_encoder{nullptr};
  torch::Tensor null_cond, latent_mean, latent_std, frames_per_token;
};
TORCH_MODULE(DiTModel);

}  // namespace losatok::models
