// Qwen2 (Qwen/Qwen2.5-0.5B: the frozen LLM that X-ARES's ASR task feeds through an adapter), the
// decoder of transformers' Qwen2ForCausalLM, read from a Hugging Face folder as distributed
// (config.json, model.safetensors or its shard index). Module names are the Hugging Face keys.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <string>
#include <vector>

namespace losatok::models {

// config.json's fields (transformers' Qwen2Config names); the defaults are Qwen2.5-0.5B's.
struct Qwen2Config {
  int64_t vocab_size = 151936, hidden_size = 896, intermediate_size = 4864;
  int64_t num_hidden_layers = 24, num_attention_heads = 14, num_key_value_heads = 2;
  double rope_theta = 1000000.0, rms_norm_eps = 1e-6;
  bool tie_word_embeddings = true;
  int64_t bos_token_id = 151643, eos_token_id = 151643;
  int64_t explicit_head_dim = 0;  // config.json's head_dim when it has one

  // Reads config.json: vocab_size, hidden_size, intermediate_size, num_hidden_layers and
  // num_attention_heads are required; the rest default as transformers does (num_key_value_heads =
  // num_attention_heads, rope_theta 10000, rms_norm_eps 1e-6, tie_word_embeddings false, token
  // ids -1 when null). A model_type other than qwen2, a hidden_act other than silu, rope_scaling
  // or use_sliding_window true are refused. Errors name the file and the field.
  static Qwen2Config from_json_file(const std::string& path);
  // explicit_head_dim, else hidden_size / num_attention_heads.
  int64_t head_dim() const;
  // Positive sizes, heads a multiple of kv heads, an even head_dim; `where` names the config.
  void validate(const std::string& where) const;
};

// Per-layer keys / values (B, num_key_value_heads, S, head_dim), after RoPE, for incremental
// decoding; forward() appends each call's.
struct Qwen2Cache {
  std::vector<torch::Tensor> k, v;
  int64_t length() const { return k.empty() || !k[0].defined() ? 0 : k[0].size(2); }
};

// weight * (x * rsqrt(mean(x^2) + eps)), the statistics in float32, cast back before the weight.
struct Qwen2RMSNormImpl : torch::nn::Module {
  Qwen2RMSNormImpl(int64_t dim, double eps);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight;
  double eps;
};
TORCH_MODULE(Qwen2RMSNorm);

// Grouped-query self-attention with RoPE: q / k / v with bias, o without.
struct Qwen2AttentionImpl : torch::nn::Module {
  explicit Qwen2AttentionImpl(const Qwen2Config& c);
  // x (B, T, H); cos / sin (B, 1, T, head_dim); allowed (B, 1, T, S) bool or undefined with
  // `causal` (no past) or without (attend to all keys); past_k / past_v: this layer's cache
  // entries (undefined before the first call), extended in place when given.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        const torch::Tensor& allowed, bool causal, torch::Tensor* past_k,
                        torch::Tensor* past_v);
  int64_t heads, kv_heads, head_dim;
  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
};
TORCH_MODULE(Qwen2Attention);

// down_proj(silu(gate_proj(x)) * up_proj(x)).
struct Qwen2MLPImpl : torch::nn::Module {
  explicit Qwen2MLPImpl(const Qwen2Config& c);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
};
TORCH_MODULE(Qwen2MLP);

// model.layers.{i}: pre-norm residual attention, then pre-norm residual MLP.
struct Qwen2DecoderLayerImpl : torch::nn::Module {
  explicit Qwen2DecoderLayerImpl(const Qwen2Config& c);
  Qwen2Attention self_attn{nullptr};
  Qwen2MLP mlp{nullptr};
  Qwen2RMSNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
};
TORCH_MODULE(Qwen2DecoderLayer);

// `model`: embed_tokens, layers, norm.
struct Qwen2ModelImpl : torch::nn::Module {
  explicit Qwen2ModelImpl(const Qwen2Config& c);
  torch::nn::Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  Qwen2RMSNorm norm{nullptr};
};
TORCH_MODULE(Qwen2Model);

class Qwen2ForCausalLMImpl : public torch::nn::Module {
 public:
  explicit Qwen2ForCausalLMImpl(const Qwen2Config& c);
  const Qwen2Config& config() const { return config_; }
  // (B, T) int64 -> (B, T, H); an id outside the vocabulary is an error.
  torch::Tensor embed(const torch::Tensor& ids) const;
  // inputs_embeds (B, T, H); attention_mask (B, past + T) of 1 / 0 (or bool) over the keys
  // (padding anywhere) or undefined (all ones); position_ids (B, T) int64 or undefined (= past
  // length + arange(T), as transformers' forward without position_ids). Causal attention combined
  // with the key mask, as transformers' sdpa path; a query row with no key to attend to (leading
  // padding) attends to all keys instead, so that its (meaningless) output stays finite. With
  // `cache`, this call's keys / values are appended to it. Returns logits (B, T, V) in the
  // weights' dtype.
  torch::Tensor forward(const torch::Tensor& inputs_embeds, const torch::Tensor& attention_mask = {},
                        const torch::Tensor& position_ids = {}, Qwen2Cache* cache = nullptr);
  // The same, returning the final norm's output (B, T, H), before lm_head.
  torch::Tensor hidden_states(const torch::Tensor& inputs_embeds, const torch::Tensor& attention_mask = {},
                              const torch::Tensor& position_ids = {}, Qwen2Cache* cache = nullptr);
  // hidden (..., H) -> logits (..., V): lm_head, or the embedding when tied.
  torch::Tensor lm_logits(const torch::Tensor& hidden) const;

  Qwen2Model model{nullptr};
  torch::nn::Linear lm_head{nullptr};  // absent when tie_word_embeddings

 private:
  Qwen2Config config_;
};
TORCH_MODULE(Qwen2ForCausalLM);

// Loads a Hugging Face folder (config.json + model.safetensors, or shards through
// model.safetensors.index.json), or a single weights file beside a config.json, cast to `dtype`
// (bf16 / fp16 files included) on `device`, frozen (eval mode, no gradients). Missing, extra or
// mis-shaped keys are a one-line error naming them and the file; a tied checkpoint's
// lm_head.weight, when present, is ignored (transformers ties it to the embedding).
Qwen2ForCausalLM load_qwen2(const std::string& path, const torch::Device& device,
                            torch::Dtype dtype = torch::kFloat32);

// Greedy decoding as transformers' generate(inputs_embeds=..., attention_mask=..., do_sample=True,
// top_k=1, repetition_penalty=p, max_new_tokens=n, eos_token_id=eos, pad_token_id=pad): prompt
// positions attention_mask.cumsum(-1) - 1 (masked ones set to 1), then each new token at the
// number of ones in the mask so far minus one; the next token is the argmax of the last
// position's float32 logits after the repetition penalty on the tokens generated so far (the
// prompt has no ids; logit < 0 ? logit * p : logit / p); finished rows emit pad. Stops when every
// row has emitted eos or after max_new_tokens. Returns each row's ids before its eos.
// attention_mask (B, L) may be undefined (all ones).
std::vector<std::vector<int64_t>> qwen2_generate_greedy(Qwen2ForCausalLMImpl& m,
                                                        const torch::Tensor& inputs_embeds,
                                                        const torch::Tensor& attention_mask,
                                                        int64_t max_new_tokens, int64_t eos_id,
                                                        int64_t pad_id, double repetition_penalty);

}  // namespace losatok::models
