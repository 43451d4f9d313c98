// The generation model of docs/method.md, "DiT": UniFlow-Audio's AudioUDiT over 1-D tokenizer
// latents (AdaLN time modulation with UniFlow's or adaLN-Zero gates, self-attention with RoPE
// and q/k LayerNorm, the time-aligned context added per block, cross-attention to the embedded
// condition sequence, GEGLU MLP, U-ViT long skips around a mid block, Conv1d output), the
// built-in text encoder, and the root module that holds both with the latent statistics.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
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
  // Cross-attention with keys and values already projected and split into heads (B, H, L, dh)
  // (k before its k_norm).
  torch::Tensor cross(const torch::Tensor& x, const torch::Tensor& k, const torch::Tensor& v,
                      const torch::Tensor& key_mask = {});
  // Attention over heads (B, H, T, dh) and the output projection.
  torch::Tensor attend(const torch::Tensor& qh, const torch::Tensor& kh, const torch::Tensor& vh,
                       const torch::Tensor& key_mask);
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
// the self-attention and the MLP (DiTConfig::gating says how a gate scales its branch); the
// time-aligned context enters as ta_proj(ta_norm(ta)) (when ta_dim > 0); cross-attention is a
// plain pre-norm residual whose keys and values come from the LayerNorm-ed condition embedding.
// An out-block of the U-ViT owns `skip_norm` + `skip_linear` (concat -> width).
struct DiTBlockImpl : torch::nn::Module {
  DiTBlockImpl(const DiTConfig& c, int ta_dim, bool takes_skip);
  // x (B, T, W); mod (B, 6, W) the block's modulation (modulation() of its adaln's output on the
  // time embedding); mask (B, T) bool; k, v (B, H, L, dh) its cross-attention keys (before
  // k_norm) and values of the embedded condition + cond_mask (B, L); ta (B, T, ta_dim) or
  // undefined; skip (B, T, W) or undefined. The DiT computes every block's mod and k, v at once.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mod, const torch::Tensor& mask,
                        const torch::Tensor& k, const torch::Tensor& v, const torch::Tensor& cond_mask,
                        const torch::Tensor& ta, const torch::Tensor& skip);
  // adaln's output (..., 6, W) -> [shift, 1 + scale, gate'] twice (gate' = 1 - gate with
  // UniFlow's gates, whose attention gate is then tanh(gate'); the gate with adaLN-Zero).
  static torch::Tensor modulation(const torch::Tensor& m, bool uniflow_gates);
  bool uniflow_gates;
  torch::nn::LayerNorm norm1{nullptr}, ta_norm{nullptr}, norm_cross{nullptr}, norm_context{nullptr},
      norm2{nullptr}, skip_norm{nullptr};
  Attention attn{nullptr}, cross_attn{nullptr};
  GegluMlp mlp{nullptr};
  torch::nn::Linear adaln{nullptr}, ta_proj{nullptr}, skip_linear{nullptr};
};
TORCH_MODULE(DiTBlock);

// The backbone: blocks in order (with U-ViT skips: depth/2 in-blocks, the mid block, depth/2
// out-blocks). cond_dim: width of the condition sequence; ta_dim: of the time-aligned context
// (TTS: the audio prompt's latents and the frame-aligned text; 0 = none).
struct DiTImpl : torch::nn::Module {
  DiTImpl(const DiTConfig& c, int cond_dim, int ta_dim);
  // x (B, T, latent_dim), sigma (B) in [0, 1] -> velocity (B, T, latent_dim), zero on padded
  // frames.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& sigma, const torch::Tensor& mask,
                        const torch::Tensor& cond, const torch::Tensor& cond_mask,
                        const torch::Tensor& ta = {});
  DiTConfig config;
  torch::nn::Linear input_proj{nullptr}, final_adaln{nullptr}, final_proj{nullptr};
  torch::nn::Sequential time_embed{nullptr}, context_embed{nullptr};  // Linear, SiLU, Linear
  torch::nn::ModuleList blocks{nullptr};
  torch::nn::LayerNorm final_norm{nullptr};
  torch::nn::Conv1d final_conv{nullptr};
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

struct UniFlowTtsImpl;
// The trained generation model, as checkpoints name it: `dit.*`, `text_encoder.*` (when the
// condition is the built-in text encoder), `tts.*` (UniFlow-style TTS: models/tts.h),
// `task_tokens` (the joint model: one content token per task of kDiTTasks), `null_cond` (only
// with flow.uncond = learned: the condition token of classifier-free guidance's unconditional
// input) and the buffers `latent_mean`, `latent_std` (per latent dimension; 0 / 1 unless
// dit.standardize) and `frames_per_token` (the infilling TTS's speaking rate).
struct DiTModelImpl : torch::nn::Module {
  // cond_dim: the width of a T5's or a cache's condition embeddings (the built-in text encoder
  // and a phoneme-only TTS set their own).
  DiTModelImpl(const DiTStageConfig& dit, int cond_dim);
  // The model's velocity for noisy latents x (B, T, D) at sigma (B). prompt (B, T, D) and
  // aligned (B, T, C) are the infilling TTS's inputs; aligned alone UniFlow TTS's time-aligned
  // content (undefined = none: zeros). task: the joint model's task (kDiTTasks index), whose
  // token leads the content.
  torch::Tensor velocity(const torch::Tensor& x, const torch::Tensor& sigma, const torch::Tensor& mask,
                         const torch::Tensor& cond, const torch::Tensor& cond_mask,
                         const torch::Tensor& prompt = {}, const torch::Tensor& aligned = {}, int task = -1);
  // Rows of cond (B, L, C) where drop (B) is true become the unconditional input (zeros, or the
  // learned null_cond).
  torch::Tensor drop_condition(const torch::Tensor& cond, const torch::Tensor& drop) const;
  torch::Tensor normalize(const torch::Tensor& z) const { return (z - latent_mean) / latent_std; }
  torch::Tensor denormalize(const torch::Tensor& z) const { return z * latent_std + latent_mean; }
  UniFlowTtsImpl& speech() { return *tts_frontend; }

  bool tts;      // F5-TTS infilling: the prompt latents and the frame-aligned text
  bool uniflow;  // UniFlow TTS: the phoneme path (alone, or in the joint model)
  bool joint;
  int cond_dim;
  DiT dit{nullptr};
  TextEncoder text_encoder{nullptr};
  std::shared_ptr<UniFlowTtsImpl> tts_frontend;
  torch::Tensor null_cond, task_tokens, latent_mean, latent_std, frames_per_token;
};
TORCH_MODULE(DiTModel);

}  // namespace losatok::models
