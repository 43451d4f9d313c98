// The T5 encoder from its published architecture (Raffel et al. 2020; T5 v1.1's gated GELU).
#include "losatok/models/t5.h"

#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "losatok/core/compat.h"
#include "losatok/core/device.h"
#include "losatok/core/error.h"
#include "losatok/core/logging.h"
#include "losatok/data/feature_cache.h"
#include "losatok/io/weights.h"
#include "losatok/models/layers.h"

namespace fs = std::filesystem;

namespace losatok::models {

std::string T5Config::activation() const {
  const std::string act = gated() ? feed_forward_proj.substr(6) : feed_forward_proj;
  // Hugging Face maps "gated-gelu" to gelu_new, the tanh approximation.
  if (feed_forward_proj == "gated-gelu" || act == "gelu_new" || act == "gelu_pytorch_tanh")
    return "gelu_tanh";
  return act;
}

T5Config T5Config::from_json_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error("T5 config '" + path + "': cannot read it");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const std::exception& e) {
    throw Error("T5 config '" + path + "': not JSON (" + first_line(e.what()) + ")");
  }
  T5Config c;
  try {
    c.vocab_size = j.value("vocab_size", c.vocab_size);
    c.d_model = j.value("d_model", c.d_model);
    c.d_kv = j.value("d_kv", c.d_kv);
    c.d_ff = j.value("d_ff", c.d_ff);
    c.num_layers = j.value("num_layers", c.num_layers);
    c.num_heads = j.value("num_heads", c.num_heads);
    c.relative_attention_num_buckets =
        j.value("relative_attention_num_buckets", c.relative_attention_num_buckets);
    c.relative_attention_max_distance =
        j.value("relative_attention_max_distance", c.relative_attention_max_distance);
    c.layer_norm_epsilon = j.value("layer_norm_epsilon", c.layer_norm_epsilon);
    c.feed_forward_proj = j.value("feed_forward_proj", c.feed_forward_proj);
  } catch (const std::exception& e) {
    throw Error("T5 config '" + path + "': a field has the wrong type (" + first_line(e.what()) + ")");
  }
  const auto positive = [&](const char* name, int v) {
    if (v <= 0)
      throw Error("T5 config '" + path + "': " + name + " must be positive, not " + std::to_string(v));
  };
  positive("vocab_size", c.vocab_size);
  positive("d_model", c.d_model);
  positive("d_kv", c.d_kv);
  positive("d_ff", c.d_ff);
  positive("num_layers", c.num_layers);
  positive("num_heads", c.num_heads);
  positive("relative_attention_num_buckets", c.relative_attention_num_buckets);
  positive("relative_attention_max_distance", c.relative_attention_max_distance);
  if (c.relative_attention_num_buckets < 4)
    throw Error("T5 config '" + path + "': relative_attention_num_buckets must be at least 4");
  const std::string act = c.activation();
  if (act != "relu" && act != "gelu" && act != "gelu_tanh" && act != "silu")
    throw Error("T5 config '" + path + "': feed_forward_proj '" + c.feed_forward_proj +
                "' is not one of relu, gelu, gelu_new, silu (optionally gated-)");
  return c;
}

torch::Tensor t5_relative_buckets(int64_t length, int num_buckets, int max_distance) {
  const int half = num_buckets / 2;  // one half per direction
  const int max_exact = half / 2;
  torch::Tensor out = torch::empty({length, length}, torch::kLong);
  auto a = out.accessor<int64_t, 2>();
  for (int64_t q = 0; q < length; ++q)
    for (int64_t k = 0; k < length; ++k) {
      const int64_t rel = k - q;
      int64_t bucket = rel > 0 ? half : 0;
      const int64_t n = std::llabs(rel);
      if (n < max_exact) {
        bucket += n;
      } else {
        // float32, truncated toward zero, as the reference computes it.
        // float32 as PyTorch computes it, the denominator a double constant rounded to float.
        const float denominator =
            static_cast<float>(std::log(static_cast<double>(max_distance) / static_cast<double>(max_exact)));
        const float large = std::log(static_cast<float>(n) / static_cast<float>(max_exact)) / denominator *
                            static_cast<float>(half - max_exact);
        bucket += std::min<int64_t>(max_exact + static_cast<int64_t>(large), half - 1);
      }
      a[q][k] = bucket;
    }
  return out;
}

T5LayerNormImpl::T5LayerNormImpl(int dim, double eps) : eps(eps) {
  weight = register_parameter("weight", torch::ones({dim}));
}

torch::Tensor T5LayerNormImpl::forward(const torch::Tensor& x) {
  const torch::Tensor var = x.to(torch::kFloat32).pow(2).mean(-1, /*keepdim=*/true);
  torch::Tensor y = x.to(torch::kFloat32) * torch::rsqrt(var + eps);
  return weight * y.to(weight.scalar_type());
}

T5AttentionImpl::T5AttentionImpl(const T5Config& c, bool has_relative_bias)
    : heads(c.num_heads),
      d_kv(c.d_kv),
      num_buckets(c.relative_attention_num_buckets),
      max_distance(c.relative_attention_max_distance) {
  const int inner = c.num_heads * c.d_kv;
  const auto lin = [](int in, int out) {
    return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(false));
  };
  q = register_module("q", lin(c.d_model, inner));
  k = register_module("k", lin(c.d_model, inner));
  v = register_module("v", lin(c.d_model, inner));
  o = register_module("o", lin(inner, c.d_model));
  if (has_relative_bias)
    relative_attention_bias =
        register_module("relative_attention_bias", torch::nn::Embedding(num_buckets, heads));
}

torch::Tensor T5AttentionImpl::position_bias(int64_t length) {
  const torch::Tensor buckets =
      t5_relative_buckets(length, num_buckets, max_distance).to(relative_attention_bias->weight.device());
  return torch::embedding(relative_attention_bias->weight, buckets).permute({2, 0, 1}).unsqueeze(0);
}

torch::Tensor T5AttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& bias) {
  const int64_t b = x.size(0), l = x.size(1);
  const auto split = [&](const torch::nn::Linear& proj) {
    return apply_linear(proj, x).view({b, l, heads, d_kv}).transpose(1, 2);
  };
  // T5 has no 1/sqrt(d) in its scores (folded into its initialisation): q is scaled by sqrt(d)
  // so that the attention kernel's own scale cancels.
  const torch::Tensor qh = split(q) * std::sqrt(static_cast<double>(d_kv));
  const torch::Tensor out = compat::scaled_dot_product_attention(qh, split(k), split(v), bias);
  return apply_linear(o, out.transpose(1, 2).reshape({b, l, heads * d_kv}));
}

T5DenseImpl::T5DenseImpl(const T5Config& c) : activation(c.activation()) {
  const auto lin = [](int in, int out) {
    return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(false));
  };
  if (c.gated()) {
    wi_0 = register_module("wi_0", lin(c.d_model, c.d_ff));
    wi_1 = register_module("wi_1", lin(c.d_model, c.d_ff));
  } else {
    wi = register_module("wi", lin(c.d_model, c.d_ff));
  }
  wo = register_module("wo", lin(c.d_ff, c.d_model));
}

torch::Tensor T5DenseImpl::forward(const torch::Tensor& x) {
  const auto act = [&](const torch::Tensor& h) {
    if (activation == "relu") return torch::relu(h);
    if (activation == "gelu") return torch::gelu(h);
    if (activation == "gelu_tanh") return torch::gelu(h, "tanh");
    return torch::silu(h);
  };
  torch::Tensor h = wi ? act(apply_linear(wi, x)) : act(apply_linear(wi_0, x)) * apply_linear(wi_1, x);
  return apply_linear(wo, h);
}

T5LayerSelfAttentionImpl::T5LayerSelfAttentionImpl(const T5Config& c, bool has_relative_bias) {
  SelfAttention = register_module("SelfAttention", T5Attention(c, has_relative_bias));
  layer_norm = register_module("layer_norm", T5LayerNorm(c.d_model, c.layer_norm_epsilon));
}

T5LayerFFImpl::T5LayerFFImpl(const T5Config& c) {
  DenseReluDense = register_module("DenseReluDense", T5Dense(c));
  layer_norm = register_module("layer_norm", T5LayerNorm(c.d_model, c.layer_norm_epsilon));
}

T5BlockImpl::T5BlockImpl(const T5Config& c, bool has_relative_bias) {
  attention = T5LayerSelfAttention(c, has_relative_bias);
  ff = T5LayerFF(c);
  layer = register_module("layer", torch::nn::ModuleList(attention, ff));
}

torch::Tensor T5BlockImpl::forward(const torch::Tensor& x, const torch::Tensor& bias) {
  torch::Tensor h = x + attention->SelfAttention->forward(attention->layer_norm->forward(x), bias);
  return h + ff->DenseReluDense->forward(ff->layer_norm->forward(h));
}

T5StackImpl::T5StackImpl(const T5Config& c) {
  block = register_module("block", torch::nn::ModuleList());
  for (int i = 0; i < c.num_layers; ++i) block->push_back(T5Block(c, /*has_relative_bias=*/i == 0));
  final_layer_norm = register_module("final_layer_norm", T5LayerNorm(c.d_model, c.layer_norm_epsilon));
}

T5EncoderModelImpl::T5EncoderModelImpl(const T5Config& c) : config(c) {
  shared = register_module("shared", torch::nn::Embedding(c.vocab_size, c.d_model));
  encoder = register_module("encoder", T5Stack(c));
}

torch::Tensor T5EncoderModelImpl::forward(const torch::Tensor& ids, const torch::Tensor& mask) {
  const int64_t l = ids.size(1);
  if (ids.numel() > 0) {
    const int64_t hi = ids.max().item<int64_t>(), lo = ids.min().item<int64_t>();
    if (lo < 0 || hi >= config.vocab_size)
      throw Error("T5 encoder: token id " + std::to_string(lo < 0 ? lo : hi) +
                  " is outside the vocabulary of " + std::to_string(config.vocab_size));
  }
  torch::Tensor x = torch::embedding(shared->weight, ids);
  auto* first = encoder->block[0]->as<T5BlockImpl>();
  // The first block's position bias, shared by every block, with the key padding mask added.
  const torch::Tensor pos = first->attention->SelfAttention->position_bias(l).to(torch::kFloat32);
  const torch::Tensor pad = torch::zeros(mask.sizes(), pos.options())
                                .masked_fill(mask.logical_not(), -1e30)  // finite in bf16 too
                                .view({mask.size(0), 1, 1, l});
  const torch::Tensor bias = (pos + pad).to(x.scalar_type());
  for (const auto& m : *encoder->block) x = m->as<T5BlockImpl>()->forward(x, bias);
  return encoder->final_layer_norm->forward(x);
}

std::string t5_weights_file(const std::string& dir) {
  for (const char* name : {"model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"}) {
    const fs::path p = fs::path(dir) / name;
    std::error_code ec;
    if (fs::is_regular_file(p, ec)) return p.string();
  }
  throw Error("T5 folder '" + dir +
              "' has no weights (model.safetensors, model.safetensors.index.json or pytorch_model.bin)");
}

T5TextEncoder::T5TextEncoder(const std::string& dir, const torch::Device& device, int max_tokens)
    : dir_(dir), device_(device), max_tokens_(max_tokens) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    throw Error("T5 text encoder '" + dir + "' is not a folder (a Hugging Face T5 / Flan-T5 download)");
  const std::string config_path = (fs::path(dir) / "config.json").string();
  const std::string spm_path = (fs::path(dir) / "spiece.model").string();
  config_ = T5Config::from_json_file(config_path);
  if (!fs::is_regular_file(spm_path, ec))
    throw Error("T5 folder '" + dir + "' has no spiece.model (its SentencePiece tokenizer)");
  tokenizer_ = std::make_unique<data::SentencePieceTokenizer>(spm_path);
  if (tokenizer_->vocab_size() > config_.vocab_size)
    throw Error("T5 folder '" + dir + "': spiece.model has " + std::to_string(tokenizer_->vocab_size()) +
                " pieces, more than the model's vocab_size " + std::to_string(config_.vocab_size));
  weights_file_ = t5_weights_file(dir);
  const io::WeightSet w = io::read_weights(weights_file_, [](const std::string& name) {
    return name == "shared.weight" || name.rfind("encoder.", 0) == 0;
  });
  io::TensorMap tensors;
  for (const auto& [name, t] : w.tensors)
    if (name != "encoder.embed_tokens.weight") tensors[name] = t;
  if (!tensors.count("shared.weight"))  // a T5EncoderModel saved with only the stack's copy
    if (const auto it = w.tensors.find("encoder.embed_tokens.weight"); it != w.tensors.end())
      tensors["shared.weight"] = it->second;
  model_ = T5EncoderModel(config_);
  const io::LoadReport report = io::load_weights(*model_, tensors, w.source);
  io::log_load_report(w.source, report);
  freeze(*model_);
  weights_hash_ = data::hash_tensors(io::module_state(*model_));
  {
    std::ifstream cj(config_path, std::ios::binary), sp(spm_path, std::ios::binary);
    const std::string c((std::istreambuf_iterator<char>(cj)), {}),
        s((std::istreambuf_iterator<char>(sp)), {});
    config_hash_ = data::hash_text(c + "\n" + s + "\nmax_tokens " + std::to_string(max_tokens_));
  }
  // Frozen: bf16 on a GPU (T5 overflows float16), float32 on the CPU.
  model_->to(device_, device_.is_cuda() ? torch::kBFloat16 : torch::kFloat32);
  spdlog::info("T5 text encoder {}: {} layers, d_model {}, {} ({} pieces)", dir, config_.num_layers,
               config_.d_model, config_.feed_forward_proj, tokenizer_->vocab_size());
}

std::vector<int64_t> T5TextEncoder::tokenize(const std::string& text) const {
  return tokenizer_->encode(text, max_tokens_);
}

T5TextEncoder::Encoding T5TextEncoder::encode(const std::vector<std::string>& texts) {
  torch::NoGradGuard no_grad;
  std::vector<std::vector<int64_t>> rows;
  int64_t longest = 1;
  for (const auto& t : texts) {
    std::vector<int64_t> ids = tokenizer_->encode(t);
    if (max_tokens_ > 0 && static_cast<int64_t>(ids.size()) > max_tokens_) {
      spdlog::warn("T5: a text of {} tokens is cut to {}: \"{}...\"", ids.size(), max_tokens_,
                   t.substr(0, 40));
      ids = tokenize(t);
    }
    rows.push_back(std::move(ids));
    longest = std::max<int64_t>(longest, static_cast<int64_t>(rows.back().size()));
  }
  const int64_t b = static_cast<int64_t>(rows.size());
  torch::Tensor ids = torch::zeros({b, longest}, torch::kLong);
  torch::Tensor mask = torch::zeros({b, longest}, torch::kBool);
  for (int64_t i = 0; i < b; ++i) {
    const int64_t n = static_cast<int64_t>(rows[i].size());
    ids[i].narrow(0, 0, n).copy_(torch::tensor(rows[i], torch::kLong));
    mask[i].narrow(0, 0, n).fill_(true);
  }
  Encoding e;
  e.mask = to_device(mask, device_);
  e.hidden = model_->forward(to_device(ids, device_), e.mask).to(torch::kFloat32) * e.mask.unsqueeze(-1);
  return e;
}

}  // namespace losatok::models
