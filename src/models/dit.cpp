// The DiT, its text encoder and the generation model's root module.
#include "losatok/models/dit.h"

#include <torch/torch.h>

#include <cmath>

#include "losatok/core/compat.h"
#include "losatok/core/error.h"
#include "losatok/models/checkpointing.h"
#include "losatok/models/init.h"

namespace losatok::models {

namespace F = torch::nn::functional;

namespace {

torch::nn::LayerNorm layer_norm(int64_t dim, bool affine, double eps = 1e-6) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim}).elementwise_affine(affine).eps(eps));
}

torch::nn::Linear linear(int64_t in, int64_t out, bool bias = true) {
  return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(bias));
}

void zero_(torch::nn::Linear& l) {
  torch::NoGradGuard no_grad;
  l->weight.zero_();
  if (l->bias.defined()) l->bias.zero_();
}

// (B, T, 1) float mask of a (B, T) bool mask.
torch::Tensor frame_weights(const torch::Tensor& mask, const torch::Tensor& like) {
  return mask.unsqueeze(-1).to(like.scalar_type());
}

}  // namespace

torch::Tensor apply_rope(const torch::Tensor& x, double theta) {
  const int64_t t = x.size(-2), dh = x.size(-1), half = dh / 2;
  const auto opts = x.options().dtype(torch::kFloat32);
  const torch::Tensor inv = torch::exp(torch::arange(half, opts) * (-std::log(theta) / half));  // (half)
  const torch::Tensor angles = torch::arange(t, opts).unsqueeze(1) * inv.unsqueeze(0);          // (T, half)
  const torch::Tensor cos = torch::cat({angles.cos(), angles.cos()}, -1).to(x.scalar_type());
  const torch::Tensor sin = torch::cat({angles.sin(), angles.sin()}, -1).to(x.scalar_type());
  const torch::Tensor x1 = x.narrow(-1, 0, half), x2 = x.narrow(-1, half, half);
  const torch::Tensor rotated = torch::cat({-x2, x1}, -1);
  return x * cos + rotated * sin;
}

torch::Tensor timestep_features(const torch::Tensor& t, int64_t dim) {
  const int64_t half = dim / 2;
  const auto opts = t.options().dtype(torch::kFloat32);
  const torch::Tensor freqs = torch::exp(torch::arange(half, opts) * (-std::log(10000.0) / half));
  const torch::Tensor args = t.to(torch::kFloat32).unsqueeze(1) * freqs.unsqueeze(0);
  return torch::cat({args.cos(), args.sin()}, -1);
}

AttentionImpl::AttentionImpl(int dim, int heads_, int context_dim, bool qk_norm, double rope_theta_)
    : heads(heads_), rope_theta(rope_theta_) {
  if (context_dim == 0) {
    qkv = register_module("qkv", linear(dim, 3 * dim, /*bias=*/false));
  } else {
    q = register_module("q", linear(dim, dim, false));
    kv = register_module("kv", linear(context_dim, 2 * dim, false));
  }
  if (qk_norm) {
    q_norm = register_module("q_norm", layer_norm(dim / heads, true));
    k_norm = register_module("k_norm", layer_norm(dim / heads, true));
  }
  proj = register_module("proj", linear(dim, dim));
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& context,
                                     const torch::Tensor& key_mask) {
  const int64_t b = x.size(0), t = x.size(1), dim = x.size(2), dh = dim / heads;
  const auto split = [&](const torch::Tensor& y) {  // (B, L, dim) -> (B, H, L, dh)
    return y.view({b, y.size(1), heads, dh}).transpose(1, 2);
  };
  torch::Tensor qh, kh, vh;
  if (qkv) {
    const auto parts = qkv->forward(x).chunk(3, -1);
    qh = split(parts[0]), kh = split(parts[1]), vh = split(parts[2]);
  } else {
    const auto parts = kv->forward(context).chunk(2, -1);
    qh = split(q->forward(x)), kh = split(parts[0]), vh = split(parts[1]);
  }
  if (q_norm) qh = q_norm->forward(qh), kh = k_norm->forward(kh);
  if (qkv && rope_theta > 0) qh = apply_rope(qh, rope_theta), kh = apply_rope(kh, rope_theta);
  torch::Tensor mask;
  if (key_mask.defined()) mask = key_mask.view({b, 1, 1, key_mask.size(1)});
  const torch::Tensor o = compat::scaled_dot_product_attention(qh, kh, vh, mask);
  return proj->forward(o.transpose(1, 2).reshape({b, t, dim}));
}

GegluMlpImpl::GegluMlpImpl(int dim, int hidden) {
  proj = register_module("proj", linear(dim, 2 * hidden));
  out = register_module("out", linear(hidden, dim));
}

torch::Tensor GegluMlpImpl::forward(const torch::Tensor& x) {
  const auto parts = proj->forward(x).chunk(2, -1);
  return out->forward(parts[0] * F::gelu(parts[1]));
}

DiTBlockImpl::DiTBlockImpl(const DiTConfig& c, int ta_dim, bool takes_skip)
    : uniflow_gates(c.gating == "uniflow") {
  if (takes_skip) {
    skip_norm = register_module("skip_norm", layer_norm(2 * c.width, true));
    skip_linear = register_module("skip_linear", linear(2 * c.width, c.width));
  }
  norm1 = register_module("norm1", layer_norm(c.width, false));
  attn = register_module("attn", Attention(c.width, c.heads, 0, c.qk_norm, c.rope_theta));
  if (ta_dim > 0) {
    ta_norm = register_module("ta_norm", layer_norm(ta_dim, true));
    ta_proj = register_module("ta_proj", linear(ta_dim, c.width, /*bias=*/false));
  }
  norm_cross = register_module("norm_cross", layer_norm(c.width, true));
  norm_context = register_module("norm_context", layer_norm(c.width, true));
  cross_attn = register_module("cross_attn", Attention(c.width, c.heads, c.width, c.qk_norm, 0.0));
  norm2 = register_module("norm2", layer_norm(c.width, false));
  mlp = register_module("mlp", GegluMlp(c.width, c.mlp_dim()));
  adaln = register_module("adaln", linear(c.width, 6 * c.width));
}

torch::Tensor DiTBlockImpl::forward(const torch::Tensor& x_in, const torch::Tensor& t,
                                    const torch::Tensor& mask, const torch::Tensor& cond,
                                    const torch::Tensor& cond_mask, const torch::Tensor& ta,
                                    const torch::Tensor& skip) {
  torch::Tensor x = x_in;
  if (skip_linear) x = skip_linear->forward(skip_norm->forward(torch::cat({x, skip}, -1)));
  // shift, scale, gate of the self-attention; shift, scale, gate of the MLP.
  const auto m = adaln->forward(t).unsqueeze(1).chunk(6, -1);  // (B, 1, W) each
  const torch::Tensor g_attn = uniflow_gates ? torch::tanh(1 - m[2]) : m[2];
  const torch::Tensor g_mlp = uniflow_gates ? 1 - m[5] : m[5];
  x = x + g_attn * attn->forward(norm1->forward(x) * (1 + m[1]) + m[0], {}, mask);
  if (ta_proj) x = x + ta_proj->forward(ta_norm->forward(ta));
  x = x + cross_attn->forward(norm_cross->forward(x), norm_context->forward(cond), cond_mask);
  x = x + g_mlp * mlp->forward(norm2->forward(x) * (1 + m[4]) + m[3]);
  return x;
}

DiTImpl::DiTImpl(const DiTConfig& c, int cond_dim, int ta_dim) : config(c) {
  input_proj = register_module("input_proj", linear(c.latent_dim, c.width));
  time_embed = register_module(
      "time_embed",
      torch::nn::Sequential(linear(c.time_freq_dim, c.width), torch::nn::SiLU(), linear(c.width, c.width)));
  context_embed = register_module(
      "context_embed",
      torch::nn::Sequential(linear(cond_dim, c.width), torch::nn::SiLU(), linear(c.width, c.width)));
  blocks = register_module("blocks", torch::nn::ModuleList());
  const int half = c.depth / 2;
  for (int i = 0; i < c.blocks(); ++i) blocks->push_back(DiTBlock(c, ta_dim, c.uvit_skips && i > half));
  final_norm = register_module("final_norm", layer_norm(c.width, false));
  final_adaln = register_module("final_adaln", linear(c.width, 2 * c.width));
  final_proj = register_module("final_proj", linear(c.width, c.latent_dim));
  if (c.final_conv)
    final_conv = register_module(
        "final_conv", torch::nn::Conv1d(torch::nn::Conv1dOptions(c.latent_dim, c.latent_dim, 3).padding(1)));
  init_trunc_normal(*this);
  // Zero-initialised AdaLN (shift = scale = gate = 0) and cross-attention outputs. With UniFlow's
  // gates the branches start open; adaLN-Zero also zeroes the output, so the model starts at 0.
  for (const auto& m : *blocks) {
    auto* b = m->as<DiTBlockImpl>();
    zero_(b->adaln);
    zero_(b->cross_attn->proj);
  }
  zero_(final_adaln);
  if (c.gating == "adaln_zero") {
    zero_(final_proj);
    if (final_conv) {
      torch::NoGradGuard no_grad;
      final_conv->weight.zero_();
      final_conv->bias.zero_();
    }
  }
}

torch::Tensor DiTImpl::forward(const torch::Tensor& x_in, const torch::Tensor& sigma,
                               const torch::Tensor& mask, const torch::Tensor& cond_in,
                               const torch::Tensor& cond_mask, const torch::Tensor& ta) {
  const torch::Tensor w = frame_weights(mask, x_in);
  torch::Tensor x = input_proj->forward(x_in) * w;
  // One SiLU of the time embedding feeds every AdaLN (UniFlow).
  const torch::Tensor t =
      F::silu(time_embed->forward(timestep_features(sigma * 1000.0, config.time_freq_dim)));
  const torch::Tensor cond = context_embed->forward(cond_in);
  const int half = config.depth / 2;
  std::vector<torch::Tensor> skips;
  for (int i = 0; i < config.blocks(); ++i) {
    auto* block = blocks[i]->as<DiTBlockImpl>();
    torch::Tensor skip;
    if (block->skip_linear) {  // out-blocks pair with the in-blocks in reverse order
      skip = skips.back();
      skips.pop_back();
    }
    if (config.grad_checkpointing && is_training() && torch::GradMode::is_enabled()) {
      x = checkpoint(
          [block, mask, cond_mask](const std::vector<torch::Tensor>& in) {
            return block->forward(in[0], in[1], mask, in[2], cond_mask, in[3], in[4]);
          },
          {x, t, cond, ta, skip});
    } else {
      x = block->forward(x, t, mask, cond, cond_mask, ta, skip);
    }
    if (config.uvit_skips && i < half) skips.push_back(x);  // the in-blocks' outputs
  }
  const auto m = final_adaln->forward(t).unsqueeze(1).chunk(2, -1);
  torch::Tensor out = final_proj->forward(final_norm->forward(x) * (1 + m[1]) + m[0]) * w;
  if (final_conv) out = final_conv->forward(out.transpose(1, 2)).transpose(1, 2) * w;
  return out;
}

TextBlockImpl::TextBlockImpl(const TextEncoderConfig& c) {
  norm1 = register_module("norm1", layer_norm(c.width, true));
  attn = register_module("attn", Attention(c.width, c.heads, 0, /*qk_norm=*/true, 10000.0));
  norm2 = register_module("norm2", layer_norm(c.width, true));
  mlp = register_module("mlp", GegluMlp(c.width, static_cast<int>(c.width * c.mlp_ratio)));
}

torch::Tensor TextBlockImpl::forward(const torch::Tensor& x_in, const torch::Tensor& mask) {
  torch::Tensor x = x_in + attn->forward(norm1->forward(x_in), {}, mask);
  return x + mlp->forward(norm2->forward(x));
}

TextEncoderImpl::TextEncoderImpl(const TextEncoderConfig& c) {
  embed = register_module("embed", torch::nn::Embedding(kTextVocab, c.width));
  blocks = register_module("blocks", torch::nn::ModuleList());
  for (int i = 0; i < c.depth; ++i) blocks->push_back(TextBlock(c));
  norm = register_module("norm", layer_norm(c.width, true));
  init_trunc_normal(*this);
  if (!SkipInit::active()) {
    torch::NoGradGuard no_grad;
    trunc_normal_(embed->weight, 0.02);
  }
}

torch::Tensor TextEncoderImpl::forward(const torch::Tensor& tokens, const torch::Tensor& mask) {
  torch::Tensor x = embed->forward(tokens);
  for (const auto& b : *blocks) x = b->as<TextBlockImpl>()->forward(x, mask);
  return norm->forward(x) * frame_weights(mask, x);
}

DiTModelImpl::DiTModelImpl(const DiTConfig& c, const TextEncoderConfig& text, bool text_condition,
                           int cond_dim_, bool tts_, bool learned_null)
    : tts(tts_), cond_dim(text_condition ? text.width : cond_dim_) {
  if (cond_dim <= 0) throw Error("DiT: the condition width must be positive");
  if (tts && !text_condition) throw Error("DiT: tts needs the text encoder");
  dit = register_module("dit", DiT(c, cond_dim, tts ? c.latent_dim + cond_dim : 0));
  if (text_condition) text_encoder = register_module("text_encoder", TextEncoder(text));
  if (learned_null) {
    null_cond = register_parameter("null_cond", torch::zeros({1, cond_dim}));
    if (!SkipInit::active()) {
      torch::NoGradGuard no_grad;
      trunc_normal_(null_cond, 0.02);
    }
  }
  latent_mean = register_buffer("latent_mean", torch::zeros({c.latent_dim}));
  latent_std = register_buffer("latent_std", torch::ones({c.latent_dim}));
  frames_per_token = register_buffer("frames_per_token", torch::ones({}));
}

torch::Tensor DiTModelImpl::velocity(const torch::Tensor& x, const torch::Tensor& sigma,
                                     const torch::Tensor& mask, const torch::Tensor& cond,
                                     const torch::Tensor& cond_mask, const torch::Tensor& prompt,
                                     const torch::Tensor& aligned) {
  torch::Tensor ta;
  if (tts) {
    if (!prompt.defined() || !aligned.defined()) throw Error("DiT: tts needs the prompt and aligned text");
    ta = torch::cat({prompt, aligned}, -1);
  }
  return dit->forward(x, sigma, mask, cond, cond_mask, ta);
}

torch::Tensor DiTModelImpl::drop_condition(const torch::Tensor& cond, const torch::Tensor& drop) const {
  const torch::Tensor d = drop.to(cond.device()).view({-1, 1, 1});
  const torch::Tensor null = null_cond.defined()
                                 ? null_cond.to(cond.scalar_type()).unsqueeze(0).expand_as(cond)
                                 : torch::zeros_like(cond);
  return torch::where(d, null, cond);
}

}  // namespace losatok::models
