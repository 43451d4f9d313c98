// The DiT, its text encoder and the generation model's root module.
#include "losatok/models/dit.h"

#include <torch/torch.h>

#include <cmath>
#include <map>
#include <mutex>
#include <string>
#include <tuple>

#include "losatok/core/compat.h"
#include "losatok/core/error.h"
#include "losatok/models/checkpointing.h"
#include "losatok/models/init.h"
#include "losatok/models/layers.h"
#include "losatok/models/tts.h"

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

// RoPE tables cos (T, Dh) and [-sin, sin] (T, Dh) for one (length, head size, theta, dtype,
// device), built once: constants (no gradient), kept for the lengths a run meets.
struct RopeTables {
  torch::Tensor cos, sin_signed;
};

RopeTables rope_tables(int64_t t, int64_t dh, double theta, const torch::TensorOptions& options) {
  static std::mutex mutex;
  static std::map<std::tuple<int64_t, int64_t, double, int, std::string>, RopeTables> cache;
  const auto key =
      std::make_tuple(t, dh, theta, static_cast<int>(options.dtype().toScalarType()), options.device().str());
  const std::lock_guard<std::mutex> lock(mutex);
  const auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  if (cache.size() >= 256) cache.clear();  // generation at many lengths: start over
  const torch::NoGradGuard no_grad;
  const int64_t half = dh / 2;
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32).device(options.device());
  const torch::Tensor inv = torch::exp(torch::arange(half, f32) * (-std::log(theta) / half));  // (half)
  const torch::Tensor angles = torch::arange(t, f32).unsqueeze(1) * inv.unsqueeze(0);          // (T, half)
  const torch::Tensor cos = angles.cos(), sin = angles.sin();
  RopeTables tables{torch::cat({cos, cos}, -1).to(options.dtype()),
                    torch::cat({-sin, sin}, -1).to(options.dtype())};
  cache.emplace(key, tables);
  return tables;
}

}  // namespace

torch::Tensor apply_rope(const torch::Tensor& x, double theta) {
  // x * [cos, cos] + rotate_half(x) * [sin, sin], with rotate_half(x) = [-x2, x1] written as the
  // halves swapped ([x2, x1], a roll) times [-sin, sin]: three operations.
  const int64_t dh = x.size(-1);
  const RopeTables tables = rope_tables(x.size(-2), dh, theta, x.options());
  return torch::addcmul(x * tables.cos, x.roll(dh / 2, -1), tables.sin_signed);
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
  if (qkv) {
    // (B, T, 3 dim) -> (3, B, H, T, dh): views of the one projection.
    const torch::Tensor parts = apply_linear(qkv, x).view({b, t, 3, heads, dh}).permute({2, 0, 3, 1, 4});
    const std::vector<torch::Tensor> qkv_h = parts.unbind(0);
    torch::Tensor qh = qkv_h[0], kh = qkv_h[1];
    if (q_norm) qh = q_norm->forward(qh), kh = k_norm->forward(kh);
    if (rope_theta > 0) {
      // q and k rotated in one call.
      const std::vector<torch::Tensor> qk =
          apply_rope(q_norm ? torch::stack({qh, kh}) : parts.narrow(0, 0, 2), rope_theta).unbind(0);
      qh = qk[0], kh = qk[1];
    }
    return attend(qh, kh, qkv_h[2], key_mask);
  }
  // (B, L, 2 dim) -> (2, B, H, L, dh)
  const std::vector<torch::Tensor> kvh =
      apply_linear(kv, context).view({b, context.size(1), 2, heads, dh}).permute({2, 0, 3, 1, 4}).unbind(0);
  return cross(x, kvh[0], kvh[1], key_mask);
}

torch::Tensor AttentionImpl::cross(const torch::Tensor& x, const torch::Tensor& k, const torch::Tensor& v,
                                   const torch::Tensor& key_mask) {
  const int64_t b = x.size(0), t = x.size(1), dh = x.size(2) / heads;
  torch::Tensor qh = apply_linear(q, x).view({b, t, heads, dh}).transpose(1, 2), kh = k;
  if (q_norm) qh = q_norm->forward(qh), kh = k_norm->forward(kh);
  return attend(qh, kh, v, key_mask);
}

torch::Tensor AttentionImpl::attend(const torch::Tensor& qh, const torch::Tensor& kh, const torch::Tensor& vh,
                                    const torch::Tensor& key_mask) {
  const int64_t b = qh.size(0), t = qh.size(2);
  torch::Tensor mask;
  if (key_mask.defined()) mask = key_mask.view({b, 1, 1, key_mask.size(1)});
  const torch::Tensor o = compat::scaled_dot_product_attention(qh, kh, vh, mask);
  return apply_linear(proj, o.transpose(1, 2).reshape({b, t, -1}));
}

GegluMlpImpl::GegluMlpImpl(int dim, int hidden) {
  proj = register_module("proj", linear(dim, 2 * hidden));
  out = register_module("out", linear(hidden, dim));
}

torch::Tensor GegluMlpImpl::forward(const torch::Tensor& x) {
  const auto parts = apply_linear(proj, x).chunk(2, -1);
  return apply_linear(out, parts[0] * F::gelu(parts[1]));
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

torch::Tensor DiTBlockImpl::modulation(const torch::Tensor& m, bool uniflow_gates) {
  // [shift, 1 + scale, gate'] of the self-attention and of the MLP, where gate' = 1 - gate with
  // UniFlow's gates (the attention's then goes through tanh) and the gate itself with adaLN-Zero:
  // m * sign + offset, one operation for every block's six.
  static std::mutex mutex;
  static std::map<std::tuple<bool, int, std::string>, std::pair<torch::Tensor, torch::Tensor>> cache;
  const std::lock_guard<std::mutex> lock(mutex);
  const auto key = std::make_tuple(uniflow_gates, static_cast<int>(m.scalar_type()), m.device().str());
  auto it = cache.find(key);
  if (it == cache.end()) {
    const std::vector<float> sign =
        uniflow_gates ? std::vector<float>{1, 1, -1, 1, 1, -1} : std::vector<float>{1, 1, 1, 1, 1, 1};
    const std::vector<float> offset =
        uniflow_gates ? std::vector<float>{0, 1, 1, 0, 1, 1} : std::vector<float>{0, 1, 0, 0, 1, 0};
    const auto opts = torch::TensorOptions().dtype(m.scalar_type()).device(m.device());
    it = cache
             .emplace(key, std::make_pair(torch::tensor(sign).to(opts).unsqueeze(-1),
                                          torch::tensor(offset).to(opts).unsqueeze(-1)))
             .first;
  }
  const auto& so = it->second;
  return torch::addcmul(so.second, m, so.first);  // (..., 6, W)
}

torch::Tensor DiTBlockImpl::forward(const torch::Tensor& x_in, const torch::Tensor& mod,
                                    const torch::Tensor& mask, const torch::Tensor& k, const torch::Tensor& v,
                                    const torch::Tensor& cond_mask, const torch::Tensor& ta,
                                    const torch::Tensor& skip) {
  torch::Tensor x = x_in;
  if (skip_linear) x = apply_linear(skip_linear, skip_norm->forward(torch::cat({x, skip}, -1)));
  // (B, 1, W) each: shift, 1 + scale, gate' of the self-attention, then of the MLP (one unbind:
  // its backward is one stack).
  const std::vector<torch::Tensor> m = mod.unsqueeze(2).unbind(1);
  const torch::Tensor g_attn = uniflow_gates ? torch::tanh(m[2]) : m[2];
  x = torch::addcmul(x, g_attn, attn->forward(torch::addcmul(m[0], norm1->forward(x), m[1]), {}, mask));
  if (ta_proj) x = x + apply_linear(ta_proj, ta_norm->forward(ta));
  x = x + cross_attn->cross(norm_cross->forward(x), k, v, cond_mask);
  x = torch::addcmul(x, m[5], mlp->forward(torch::addcmul(m[3], norm2->forward(x), m[4])));
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
  torch::Tensor x = apply_linear(input_proj, x_in) * w;
  // One SiLU of the time embedding feeds every AdaLN (UniFlow).
  const torch::Tensor t =
      F::silu(time_embed->forward(timestep_features(sigma * 1000.0, config.time_freq_dim)));
  const torch::Tensor cond = context_embed->forward(cond_in);
  const int n = config.blocks(), width = config.width;
  std::vector<DiTBlockImpl*> bs;
  for (int i = 0; i < n; ++i) bs.push_back(blocks[i]->as<DiTBlockImpl>());
  // Every block's AdaLN reads the same time embedding: one GEMM over their weights side by side
  // (the parameters stay per block, as checkpoints name them).
  std::vector<torch::Tensor> aw, ab;
  for (auto* b : bs) aw.push_back(b->adaln->weight), ab.push_back(b->adaln->bias);
  const torch::Tensor mods = DiTBlockImpl::modulation(
      torch::linear(t, torch::cat(aw), torch::cat(ab)).view({t.size(0), n, 6, width}), bs[0]->uniflow_gates);
  // Every block's cross-attention keys and values come from the same condition through its own
  // LayerNorm (affine g_i, b_i) and kv weight W_i: W_i (g_i * c^ + b_i) = (W_i g_i) c^ + W_i b_i, with
  // c^ normalised once, so all blocks' keys and values are one GEMM as well.
  std::vector<torch::Tensor> kw, ng, nb;
  for (auto* b : bs)
    kw.push_back(b->cross_attn->kv->weight), ng.push_back(b->norm_context->weight),
        nb.push_back(b->norm_context->bias);
  const torch::Tensor w_kv = torch::stack(kw);  // (N, 2W, W)
  const auto& ln = bs[0]->norm_context->options;
  const torch::Tensor cond_hat =
      F::layer_norm(cond, F::LayerNormFuncOptions(ln.normalized_shape()).eps(ln.eps()));
  const torch::Tensor kv_weight = (w_kv * torch::stack(ng).unsqueeze(1)).view({n * 2 * width, width});
  const torch::Tensor kv_bias = torch::bmm(w_kv, torch::stack(nb).unsqueeze(-1)).view({n * 2 * width});
  const int heads = bs[0]->cross_attn->heads;
  // (B, L, N * 2W) -> (N, 2, B, H, L, dh)
  const torch::Tensor kvs = torch::linear(cond_hat, kv_weight, kv_bias)
                                .view({cond.size(0), cond.size(1), n, 2, heads, width / heads})
                                .permute({2, 3, 0, 4, 1, 5});
  const std::vector<torch::Tensor> block_mods = mods.unbind(1), block_kvs = kvs.unbind(0);
  const int half = config.depth / 2;
  std::vector<torch::Tensor> skips;
  for (int i = 0; i < n; ++i) {
    auto* block = bs[static_cast<std::size_t>(i)];
    torch::Tensor skip;
    if (block->skip_linear) {  // out-blocks pair with the in-blocks in reverse order
      skip = skips.back();
      skips.pop_back();
    }
    const torch::Tensor& mod = block_mods[static_cast<std::size_t>(i)];
    const torch::Tensor& kv = block_kvs[static_cast<std::size_t>(i)];  // (2, B, H, L, dh)
    if (config.grad_checkpointing && is_training() && torch::GradMode::is_enabled()) {
      x = checkpoint(
          [block, mask, cond_mask](const std::vector<torch::Tensor>& in) {
            const std::vector<torch::Tensor> k_v = in[2].unbind(0);
            return block->forward(in[0], in[1], mask, k_v[0], k_v[1], cond_mask, in[3], in[4]);
          },
          {x, mod, kv, ta, skip});
    } else {
      const std::vector<torch::Tensor> k_v = kv.unbind(0);
      x = block->forward(x, mod, mask, k_v[0], k_v[1], cond_mask, ta, skip);
    }
    if (config.uvit_skips && i < half) skips.push_back(x);  // the in-blocks' outputs
  }
  const torch::Tensor m = apply_linear(final_adaln, t).view({t.size(0), 2, 1, width});  // shift, scale
  torch::Tensor out =
      apply_linear(final_proj, torch::addcmul(m.select(1, 0), final_norm->forward(x), m.select(1, 1) + 1)) *
      w;
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

namespace {

// The content width: the built-in text encoder's, a T5's / cache's, or, for a model that only
// speaks through phonemes, the phoneme encoder's.
int content_width(const DiTStageConfig& d, int cond_dim) {
  if (d.phonemes_only()) return d.tts.encoder.width;
  if (d.condition.source == "text") return d.text.width;
  return cond_dim;
}

}  // namespace

DiTModelImpl::DiTModelImpl(const DiTStageConfig& d, int cond_dim_)
    : tts(d.task == "tts" && !d.tts.uniflow()),
      uniflow(d.uniflow_tts()),
      joint(d.joint()),
      cond_dim(content_width(d, cond_dim_)) {
  const DiTConfig& c = d.model;
  if (cond_dim <= 0) throw Error("DiT: the condition width must be positive");
  const bool text_condition = !d.phonemes_only() && d.condition.source == "text";
  if (tts && !text_condition) throw Error("DiT: tts needs the text encoder");
  const int ta_dim = tts ? c.latent_dim + cond_dim : uniflow ? cond_dim : 0;
  dit = register_module("dit", DiT(c, cond_dim, ta_dim));
  if (text_condition) text_encoder = register_module("text_encoder", TextEncoder(d.text));
  if (uniflow)
    tts_frontend = register_module("tts", std::make_shared<UniFlowTtsImpl>(d.tts, cond_dim, c.latent_dim));
  if (joint) {
    task_tokens = register_parameter("task_tokens", torch::zeros({kNumDiTTasks, cond_dim}));
    if (!SkipInit::active()) {
      torch::NoGradGuard no_grad;
      trunc_normal_(task_tokens, 0.02);
    }
  }
  if (d.flow.uncond == "learned") {
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
                                     const torch::Tensor& mask, const torch::Tensor& cond_in,
                                     const torch::Tensor& cond_mask_in, const torch::Tensor& prompt,
                                     const torch::Tensor& aligned, int task) {
  torch::Tensor ta, cond = cond_in, cond_mask = cond_mask_in;
  if (tts) {
    if (!prompt.defined() || !aligned.defined()) throw Error("DiT: tts needs the prompt and aligned text");
    ta = torch::cat({prompt, aligned}, -1);
  } else if (uniflow) {
    ta = aligned.defined() ? aligned : torch::zeros({x.size(0), x.size(1), cond_dim}, x.options());
  }
  if (joint) {
    if (task < 0 || task >= kNumDiTTasks) throw Error("DiT: the joint model needs a task (tta, ttm or tts)");
    const int64_t b = cond.size(0);
    cond = torch::cat(
        {task_tokens[task].to(cond.scalar_type()).view({1, 1, -1}).expand({b, 1, cond_dim}), cond}, 1);
    cond_mask = torch::cat({torch::ones({b, 1}, cond_mask.options()), cond_mask}, 1);
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
