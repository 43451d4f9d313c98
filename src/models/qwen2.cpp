// The Qwen2 decoder from its published architecture (Qwen2 technical report; transformers'
// Qwen2ForCausalLM): RMSNorm, RoPE, grouped-query attention with q/k/v biases, SwiGLU MLP.
#include "losatok/models/qwen2.h"

#include <torch/torch.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "losatok/core/compat.h"
#include "losatok/core/error.h"
#include "losatok/core/file_util.h"
#include "losatok/core/logging.h"
#include "losatok/io/weights.h"
#include "losatok/models/layers.h"

namespace fs = std::filesystem;

namespace losatok::models {

namespace {

std::string shape_of(const torch::Tensor& t) {
  std::string s = "(";
  for (int64_t d = 0; d < t.dim(); ++d) s += (d ? ", " : "") + std::to_string(t.size(d));
  return s + ")";
}

// x[..., :d/2], x[..., d/2:] -> cat(-second, first)
torch::Tensor rotate_half(const torch::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return torch::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

// cos, sin (B, 1, T, head_dim) for positions (B, T): inv_freq and the angles in float32 (as
// transformers computes them, autocast off), then cast to `dtype`.
std::pair<torch::Tensor, torch::Tensor> rope(const torch::Tensor& positions, int64_t head_dim, double theta,
                                             torch::Dtype dtype) {
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32).device(positions.device());
  const torch::Tensor exponent = torch::arange(0, head_dim, 2, f32.dtype(torch::kLong)).to(torch::kFloat32) /
                                 static_cast<double>(head_dim);
  const torch::Tensor inv_freq = torch::pow(theta, exponent).reciprocal();             // (head_dim / 2)
  const torch::Tensor freqs = positions.to(torch::kFloat32).unsqueeze(-1) * inv_freq;  // (B, T, head_dim / 2)
  const torch::Tensor emb = torch::cat({freqs, freqs}, -1);
  return {emb.cos().to(dtype).unsqueeze(1), emb.sin().to(dtype).unsqueeze(1)};
}

}  // namespace

int64_t Qwen2Config::head_dim() const {
  return explicit_head_dim > 0 ? explicit_head_dim : hidden_size / std::max<int64_t>(num_attention_heads, 1);
}

void Qwen2Config::validate(const std::string& where) const {
  const auto positive = [&](const char* name, int64_t v) {
    if (v <= 0) throw Error(where + ": " + name + " must be positive, not " + std::to_string(v));
  };
  positive("vocab_size", vocab_size);
  positive("hidden_size", hidden_size);
  positive("intermediate_size", intermediate_size);
  positive("num_hidden_layers", num_hidden_layers);
  positive("num_attention_heads", num_attention_heads);
  positive("num_key_value_heads", num_key_value_heads);
  if (explicit_head_dim == 0 && hidden_size % num_attention_heads != 0)
    throw Error(where + ": hidden_size " + std::to_string(hidden_size) +
                " is not a multiple of num_attention_heads " + std::to_string(num_attention_heads));
  if (num_attention_heads % num_key_value_heads != 0)
    throw Error(where + ": num_attention_heads " + std::to_string(num_attention_heads) +
                " is not a multiple of num_key_value_heads " + std::to_string(num_key_value_heads));
  if (head_dim() <= 0 || head_dim() % 2 != 0)
    throw Error(where + ": head_dim " + std::to_string(head_dim()) + " must be positive and even (RoPE)");
  if (!(rope_theta > 0.0)) throw Error(where + ": rope_theta must be positive");
  if (!(rms_norm_eps > 0.0)) throw Error(where + ": rms_norm_eps must be positive");
}

Qwen2Config Qwen2Config::from_json_file(const std::string& path) {
  const std::string where = "Qwen2 config '" + path + "'";
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file(path));
  } catch (const nlohmann::json::exception& e) {
    throw Error(where + ": not valid JSON (" + first_line(e.what()) + ")");
  }
  if (!j.is_object()) throw Error(where + ": not a JSON object");
  const auto field = [&](const char* name) -> const nlohmann::json* {
    return j.contains(name) && !j[name].is_null() ? &j[name] : nullptr;
  };
  const auto integer = [&](const char* name, const int64_t* fallback) -> int64_t {
    const nlohmann::json* v = field(name);
    if (!v) {
      if (fallback) return *fallback;
      throw Error(where + " has no " + name);
    }
    if (!v->is_number_integer()) throw Error(where + ": " + name + " must be an integer, not " + v->dump());
    return v->get<int64_t>();
  };
  const auto number = [&](const char* name, double fallback) -> double {
    const nlohmann::json* v = field(name);
    if (!v) return fallback;
    if (!v->is_number()) throw Error(where + ": " + name + " must be a number, not " + v->dump());
    return v->get<double>();
  };
  const auto token = [&](const char* name) -> int64_t {
    const nlohmann::json* v = field(name);
    if (v && v->is_array() && !v->empty()) v = &(*v)[0];  // a list of ids: the first
    if (!v) return -1;
    if (!v->is_number_integer()) throw Error(where + ": " + name + " must be an integer, not " + v->dump());
    return v->get<int64_t>();
  };
  const auto text = [&](const char* name) -> std::string {
    const nlohmann::json* v = field(name);
    if (!v) return "";
    if (!v->is_string()) throw Error(where + ": " + name + " must be a string, not " + v->dump());
    return v->get<std::string>();
  };
  Qwen2Config c;
  c.vocab_size = integer("vocab_size", nullptr);
  c.hidden_size = integer("hidden_size", nullptr);
  c.intermediate_size = integer("intermediate_size", nullptr);
  c.num_hidden_layers = integer("num_hidden_layers", nullptr);
  c.num_attention_heads = integer("num_attention_heads", nullptr);
  c.num_key_value_heads = integer("num_key_value_heads", &c.num_attention_heads);
  const int64_t no_head_dim = 0;
  c.explicit_head_dim = integer("head_dim", &no_head_dim);
  c.rope_theta = number("rope_theta", 10000.0);
  c.rms_norm_eps = number("rms_norm_eps", 1e-6);
  if (const nlohmann::json* v = field("tie_word_embeddings")) {
    if (!v->is_boolean())
      throw Error(where + ": tie_word_embeddings must be true or false, not " + v->dump());
    c.tie_word_embeddings = v->get<bool>();
  } else {
    c.tie_word_embeddings = false;
  }
  c.bos_token_id = token("bos_token_id");
  c.eos_token_id = token("eos_token_id");
  if (const std::string type = text("model_type"); !type.empty() && type != "qwen2")
    throw Error(where + ": model_type '" + type + "' is not qwen2");
  if (const std::string act = text("hidden_act"); !act.empty() && act != "silu")
    throw Error(where + ": hidden_act '" + act + "' is not supported (silu)");
  if (const nlohmann::json* v = field("rope_scaling"))
    if (!(v->is_object() && v->value("rope_type", v->value("type", "")) == "default"))
      throw Error(where + ": rope_scaling " + v->dump() + " is not supported (only plain RoPE)");
  if (const nlohmann::json* v = field("use_sliding_window"); v && v->is_boolean() && v->get<bool>())
    throw Error(where + ": use_sliding_window true is not supported");
  c.validate(where);
  return c;
}

Qwen2RMSNormImpl::Qwen2RMSNormImpl(int64_t dim, double eps) : eps(eps) {
  weight = register_parameter("weight", torch::ones({dim}));
}

torch::Tensor Qwen2RMSNormImpl::forward(const torch::Tensor& x) {
  const torch::Tensor h = x.to(torch::kFloat32);
  const torch::Tensor var = h.pow(2).mean(-1, /*keepdim=*/true);
  return weight * (h * torch::rsqrt(var + eps)).to(x.scalar_type());
}

Qwen2AttentionImpl::Qwen2AttentionImpl(const Qwen2Config& c)
    : heads(c.num_attention_heads), kv_heads(c.num_key_value_heads), head_dim(c.head_dim()) {
  const auto lin = [](int64_t in, int64_t out, bool bias) {
    return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(bias));
  };
  q_proj = register_module("q_proj", lin(c.hidden_size, heads * head_dim, true));
  k_proj = register_module("k_proj", lin(c.hidden_size, kv_heads * head_dim, true));
  v_proj = register_module("v_proj", lin(c.hidden_size, kv_heads * head_dim, true));
  o_proj = register_module("o_proj", lin(heads * head_dim, c.hidden_size, false));
}

torch::Tensor Qwen2AttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& cos,
                                          const torch::Tensor& sin, const torch::Tensor& allowed, bool causal,
                                          torch::Tensor* past_k, torch::Tensor* past_v) {
  const int64_t b = x.size(0), t = x.size(1);
  const auto split = [&](const torch::nn::Linear& proj, int64_t n) {
    return apply_linear(proj, x).view({b, t, n, head_dim}).transpose(1, 2);
  };
  torch::Tensor q = split(q_proj, heads), k = split(k_proj, kv_heads), v = split(v_proj, kv_heads);
  q = q * cos + rotate_half(q) * sin;
  k = k * cos + rotate_half(k) * sin;
  if (past_k) {
    if (past_k->defined()) {
      k = torch::cat({*past_k, k}, 2);
      v = torch::cat({*past_v, v}, 2);
    }
    *past_k = k;
    *past_v = v;
  }
  // Each kv head serves heads / kv_heads consecutive query heads.
  const int64_t groups = heads / kv_heads, s = k.size(2);
  if (groups > 1) {
    k = k.unsqueeze(2).expand({b, kv_heads, groups, s, head_dim}).reshape({b, heads, s, head_dim});
    v = v.unsqueeze(2).expand({b, kv_heads, groups, s, head_dim}).reshape({b, heads, s, head_dim});
  }
  const torch::Tensor out =
      compat::scaled_dot_product_attention(q, k, v, allowed, 0.0, causal);  // (B, heads, T, D)
  return apply_linear(o_proj, out.transpose(1, 2).reshape({b, t, heads * head_dim}));
}

Qwen2MLPImpl::Qwen2MLPImpl(const Qwen2Config& c) {
  const auto lin = [](int64_t in, int64_t out) {
    return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(false));
  };
  gate_proj = register_module("gate_proj", lin(c.hidden_size, c.intermediate_size));
  up_proj = register_module("up_proj", lin(c.hidden_size, c.intermediate_size));
  down_proj = register_module("down_proj", lin(c.intermediate_size, c.hidden_size));
}

torch::Tensor Qwen2MLPImpl::forward(const torch::Tensor& x) {
  return apply_linear(down_proj, torch::silu(apply_linear(gate_proj, x)) * apply_linear(up_proj, x));
}

Qwen2DecoderLayerImpl::Qwen2DecoderLayerImpl(const Qwen2Config& c) {
  self_attn = register_module("self_attn", Qwen2Attention(c));
  mlp = register_module("mlp", Qwen2MLP(c));
  input_layernorm = register_module("input_layernorm", Qwen2RMSNorm(c.hidden_size, c.rms_norm_eps));
  post_attention_layernorm =
      register_module("post_attention_layernorm", Qwen2RMSNorm(c.hidden_size, c.rms_norm_eps));
}

Qwen2ModelImpl::Qwen2ModelImpl(const Qwen2Config& c) {
  embed_tokens = register_module("embed_tokens", torch::nn::Embedding(c.vocab_size, c.hidden_size));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) layers->push_back(Qwen2DecoderLayer(c));
  norm = register_module("norm", Qwen2RMSNorm(c.hidden_size, c.rms_norm_eps));
}

Qwen2ForCausalLMImpl::Qwen2ForCausalLMImpl(const Qwen2Config& c) : config_(c) {
  c.validate("Qwen2 config");
  model = register_module("model", Qwen2Model(c));
  if (!c.tie_word_embeddings)
    lm_head = register_module(
        "lm_head", torch::nn::Linear(torch::nn::LinearOptions(c.hidden_size, c.vocab_size).bias(false)));
}

torch::Tensor Qwen2ForCausalLMImpl::embed(const torch::Tensor& ids) const {
  if (ids.numel() > 0) {
    const int64_t lo = ids.min().item<int64_t>(), hi = ids.max().item<int64_t>();
    if (lo < 0 || hi >= config_.vocab_size)
      throw Error("Qwen2: token id " + std::to_string(lo < 0 ? lo : hi) + " is outside the vocabulary of " +
                  std::to_string(config_.vocab_size));
  }
  return torch::embedding(model->embed_tokens->weight, ids);
}

torch::Tensor Qwen2ForCausalLMImpl::lm_logits(const torch::Tensor& hidden) const {
  return torch::linear(hidden, lm_head ? lm_head->weight : model->embed_tokens->weight);
}

torch::Tensor Qwen2ForCausalLMImpl::hidden_states(const torch::Tensor& inputs_embeds,
                                                  const torch::Tensor& attention_mask,
                                                  const torch::Tensor& position_ids, Qwen2Cache* cache) {
  if (inputs_embeds.dim() != 3 || inputs_embeds.size(2) != config_.hidden_size)
    throw Error("Qwen2: inputs_embeds must be (B, T, " + std::to_string(config_.hidden_size) + "), not " +
                shape_of(inputs_embeds));
  const int64_t b = inputs_embeds.size(0), t = inputs_embeds.size(1);
  const int64_t layers = config_.num_hidden_layers;
  if (cache && cache->k.empty()) {
    cache->k.resize(layers);
    cache->v.resize(layers);
  }
  if (cache && static_cast<int64_t>(cache->k.size()) != layers)
    throw Error("Qwen2: the cache holds " + std::to_string(cache->k.size()) + " layers, the model " +
                std::to_string(layers));
  const int64_t past = cache ? cache->length() : 0, s = past + t;
  const torch::Device device = inputs_embeds.device();
  torch::Tensor positions = position_ids;
  if (positions.defined()) {
    if (positions.dim() != 2 || positions.size(0) != b || positions.size(1) != t)
      throw Error("Qwen2: position_ids must be (" + std::to_string(b) + ", " + std::to_string(t) + "), not " +
                  shape_of(positions));
    positions = positions.to(device, torch::kLong);
  } else {
    positions = (torch::arange(t, torch::TensorOptions().dtype(torch::kLong).device(device)) + past)
                    .unsqueeze(0)
                    .expand({b, t});
  }
  const auto [cos, sin] =
      rope(positions, config_.head_dim(), config_.rope_theta, inputs_embeds.scalar_type());
  // Which keys each query sees: causal (after the past), and the key mask.
  torch::Tensor allowed;
  bool causal = false;
  if (attention_mask.defined()) {
    if (attention_mask.dim() != 2 || attention_mask.size(0) != b || attention_mask.size(1) != s)
      throw Error("Qwen2: attention_mask must be (B, past + T) = (" + std::to_string(b) + ", " +
                  std::to_string(s) + "), not " + shape_of(attention_mask));
    const auto opts = torch::TensorOptions().dtype(torch::kLong).device(device);
    const torch::Tensor q_index = torch::arange(t, opts) + past;
    const torch::Tensor k_index = torch::arange(s, opts);
    allowed = (k_index.unsqueeze(0) <= q_index.unsqueeze(1)).view({1, 1, t, s}) &
              attention_mask.to(device).to(torch::kBool).view({b, 1, 1, s});
    allowed = allowed | allowed.any(-1, /*keepdim=*/true).logical_not();  // no key at all: every key
  } else if (t > 1) {
    if (past == 0) {
      causal = true;
    } else {
      const auto opts = torch::TensorOptions().dtype(torch::kLong).device(device);
      allowed = (torch::arange(s, opts).unsqueeze(0) <= (torch::arange(t, opts) + past).unsqueeze(1))
                    .view({1, 1, t, s});
    }
  }
  torch::Tensor x = inputs_embeds;
  for (int64_t i = 0; i < layers; ++i) {
    auto* layer = model->layers[i]->as<Qwen2DecoderLayerImpl>();
    torch::Tensor* past_k = cache ? &cache->k[i] : nullptr;
    torch::Tensor* past_v = cache ? &cache->v[i] : nullptr;
    x = x + layer->self_attn->forward(layer->input_layernorm->forward(x), cos, sin, allowed, causal, past_k,
                                      past_v);
    x = x + layer->mlp->forward(layer->post_attention_layernorm->forward(x));
  }
  return model->norm->forward(x);
}

torch::Tensor Qwen2ForCausalLMImpl::forward(const torch::Tensor& inputs_embeds,
                                            const torch::Tensor& attention_mask,
                                            const torch::Tensor& position_ids, Qwen2Cache* cache) {
  return lm_logits(hidden_states(inputs_embeds, attention_mask, position_ids, cache));
}

Qwen2ForCausalLM load_qwen2(const std::string& path, const torch::Device& device, torch::Dtype dtype) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw Error("Qwen2 '" + path + "': no such file or folder");
  const bool is_dir = fs::is_directory(path, ec);
  const fs::path dir = is_dir ? fs::path(path) : fs::path(path).parent_path();
  const std::string config_path = (dir / "config.json").string();
  if (!fs::exists(config_path, ec))
    throw Error("Qwen2 '" + path + "': no config.json " + (is_dir ? "in the folder" : "beside the weights"));
  const Qwen2Config config = Qwen2Config::from_json_file(config_path);
  io::WeightSet weights = io::read_weights(path);
  if (config.tie_word_embeddings) weights.tensors.erase("lm_head.weight");
  Qwen2ForCausalLM m(config);
  m->to(dtype);
  io::LoadOptions lenient;
  lenient.strict = false;
  const io::LoadReport report = io::load_weights(*m, weights.tensors, weights.source, lenient);
  if (!report.clean())
    throw Error("Qwen2 weights '" + weights.source + "' do not match " + config_path + ": " +
                report.summary());
  freeze(*m);
  m->to(device);
  spdlog::info("Qwen2 {}: {} layers, hidden {}, {} heads / {} kv heads, vocab {} ({})", path,
               config.num_hidden_layers, config.hidden_size, config.num_attention_heads,
               config.num_key_value_heads, config.vocab_size, weights.source);
  return m;
}

std::vector<std::vector<int64_t>> qwen2_generate_greedy(Qwen2ForCausalLMImpl& m,
                                                        const torch::Tensor& inputs_embeds,
                                                        const torch::Tensor& attention_mask,
                                                        int64_t max_new_tokens, int64_t eos_id,
                                                        int64_t pad_id, double repetition_penalty) {
  torch::NoGradGuard no_grad;
  if (inputs_embeds.dim() != 3 || inputs_embeds.size(1) == 0)
    throw Error("Qwen2 generate: inputs_embeds must be (B, L, H) with L > 0, not " + shape_of(inputs_embeds));
  if (max_new_tokens < 0) throw Error("Qwen2 generate: max_new_tokens must not be negative");
  if (!(repetition_penalty > 0.0))
    throw Error("Qwen2 generate: repetition_penalty must be positive, not " +
                std::to_string(repetition_penalty));
  const int64_t b = inputs_embeds.size(0), l = inputs_embeds.size(1);
  const torch::Device device = inputs_embeds.device();
  const auto long_opts = torch::TensorOptions().dtype(torch::kLong).device(device);
  torch::Tensor mask =
      attention_mask.defined() ? attention_mask.to(device, torch::kLong) : torch::ones({b, l}, long_opts);
  if (mask.dim() != 2 || mask.size(0) != b || mask.size(1) != l)
    throw Error("Qwen2 generate: attention_mask must be (" + std::to_string(b) + ", " + std::to_string(l) +
                "), not " + shape_of(mask));
  std::vector<std::vector<int64_t>> out(b);
  if (max_new_tokens == 0) return out;
  const torch::Tensor positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1);
  Qwen2Cache cache;
  torch::Tensor hidden = m.hidden_states(inputs_embeds, mask, positions, &cache);
  torch::Tensor last = m.lm_logits(hidden.select(1, l - 1)).to(torch::kFloat32);  // (B, V)
  torch::Tensor generated = torch::empty({b, 0}, long_opts);
  torch::Tensor unfinished = torch::ones({b}, long_opts.dtype(torch::kBool));
  for (int64_t step = 0; step < max_new_tokens; ++step) {
    torch::Tensor scores = last;
    if (repetition_penalty != 1.0 && generated.size(1) > 0) {
      scores = scores.clone();
      const torch::Tensor got = scores.gather(1, generated);
      scores.scatter_(1, generated,
                      torch::where(got < 0, got * repetition_penalty, got / repetition_penalty));
    }
    torch::Tensor next = scores.argmax(-1);
    next = torch::where(unfinished, next, torch::full_like(next, pad_id));
    generated = torch::cat({generated, next.unsqueeze(1)}, 1);
    unfinished = unfinished & (next != eos_id);
    if (!unfinished.any().item<bool>() || step + 1 == max_new_tokens) break;
    mask = torch::cat({mask, torch::ones({b, 1}, long_opts)}, 1);
    const torch::Tensor pos = (mask.sum(-1) - 1).unsqueeze(1);
    hidden = m.hidden_states(m.embed(next.unsqueeze(1)), mask, pos, &cache);
    last = m.lm_logits(hidden.select(1, 0)).to(torch::kFloat32);
  }
  const torch::Tensor ids = generated.cpu();
  for (int64_t r = 0; r < b; ++r)
    for (int64_t k = 0; k < ids.size(1); ++k) {
      const int64_t id = ids[r][k].item<int64_t>();
      if (id == eos_id) break;
      out[r].push_back(id);
    }
  return out;
}

}  // namespace losatok::models
