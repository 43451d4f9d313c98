// The frozen T5 text encoder of the DiT's TTA / TTM conditioning (docs/method.md, "Conditioning"):
// the T5 v1.1 / Flan-T5 encoder (and the original T5's), read from a Hugging Face folder as it
// is (config.json, model.safetensors | its shard index | pytorch_model.bin, spiece.model).
// Module names are the Hugging Face keys, so the files load without renaming.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <memory>
#include <string>
#include <vector>

#include "losatok/data/sentencepiece.h"

namespace losatok::models {

// config.json's fields (Hugging Face's T5Config names and defaults).
struct T5Config {
  int vocab_size = 32128;
  int d_model = 512;
  int d_kv = 64;
  int d_ff = 2048;
  int num_layers = 6;
  int num_heads = 8;
  int relative_attention_num_buckets = 32;
  int relative_attention_max_distance = 128;
  double layer_norm_epsilon = 1e-6;
  // relu (T5) | gated-gelu (T5 v1.1, Flan-T5: GELU with the tanh approximation) | gelu | silu |
  // gated-silu | ...: "gated-" splits wi into wi_0 (activated) and wi_1.
  std::string feed_forward_proj = "relu";

  bool gated() const { return feed_forward_proj.rfind("gated-", 0) == 0; }
  // The activation's name: relu | gelu (exact) | gelu_tanh | silu.
  std::string activation() const;
  // Reads config.json; a missing file, bad JSON or a non-positive size is an error naming it.
  static T5Config from_json_file(const std::string& path);
};

// The bidirectional relative position buckets of T5's encoder for (query, key) offsets
// key - query: half the buckets per direction, exact below num_buckets / 4, logarithmic up to
// max_distance, clamped above. (L, L) int64.
torch::Tensor t5_relative_buckets(int64_t length, int num_buckets, int max_distance);

// T5's layer norm: x * rsqrt(mean(x^2) + eps) * weight (no mean, no bias; statistics in float32).
struct T5LayerNormImpl : torch::nn::Module {
  T5LayerNormImpl(int dim, double eps);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight;
  double eps;
};
TORCH_MODULE(T5LayerNorm);

// Self-attention without biases and without the 1/sqrt(d) scale; block 0 owns the relative
// position bias table every block adds.
struct T5AttentionImpl : torch::nn::Module {
  T5AttentionImpl(const T5Config& c, bool has_relative_bias);
  // x (B, L, d_model); bias (B or 1, H, L, L) the position bias plus the key padding mask.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& bias);
  // (1, H, L, L) from relative_attention_bias.
  torch::Tensor position_bias(int64_t length);
  int heads, d_kv, num_buckets, max_distance;
  torch::nn::Linear q{nullptr}, k{nullptr}, v{nullptr}, o{nullptr};
  torch::nn::Embedding relative_attention_bias{nullptr};
};
TORCH_MODULE(T5Attention);

struct T5DenseImpl : torch::nn::Module {
  explicit T5DenseImpl(const T5Config& c);
  torch::Tensor forward(const torch::Tensor& x);
  std::string activation;
  torch::nn::Linear wi{nullptr}, wi_0{nullptr}, wi_1{nullptr}, wo{nullptr};
};
TORCH_MODULE(T5Dense);

struct T5LayerSelfAttentionImpl : torch::nn::Module {
  T5LayerSelfAttentionImpl(const T5Config& c, bool has_relative_bias);
  T5Attention SelfAttention{nullptr};
  T5LayerNorm layer_norm{nullptr};
};
TORCH_MODULE(T5LayerSelfAttention);

struct T5LayerFFImpl : torch::nn::Module {
  explicit T5LayerFFImpl(const T5Config& c);
  T5Dense DenseReluDense{nullptr};
  T5LayerNorm layer_norm{nullptr};
};
TORCH_MODULE(T5LayerFF);

// encoder.block.{i}: layer.0 (self-attention), layer.1 (feed-forward), pre-norm residuals.
struct T5BlockImpl : torch::nn::Module {
  T5BlockImpl(const T5Config& c, bool has_relative_bias);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& bias);
  torch::nn::ModuleList layer{nullptr};
  T5LayerSelfAttention attention{nullptr};
  T5LayerFF ff{nullptr};
};
TORCH_MODULE(T5Block);

struct T5StackImpl : torch::nn::Module {
  explicit T5StackImpl(const T5Config& c);
  torch::nn::ModuleList block{nullptr};
  T5LayerNorm final_layer_norm{nullptr};
};
TORCH_MODULE(T5Stack);

// `shared` (the token embedding) + `encoder`: ids (B, L) int64, mask (B, L) bool (true = token)
// -> last_hidden_state (B, L, d_model) in the weights' dtype.
struct T5EncoderModelImpl : torch::nn::Module {
  explicit T5EncoderModelImpl(const T5Config& c);
  torch::Tensor forward(const torch::Tensor& ids, const torch::Tensor& mask);
  T5Config config;
  torch::nn::Embedding shared{nullptr};
  T5Stack encoder{nullptr};
};
TORCH_MODULE(T5EncoderModel);

// A Hugging Face T5 folder ready to encode text: config, tokenizer and frozen weights (bf16 on
// a GPU, float32 on the CPU), in eval mode with gradients off.
class T5TextEncoder {
 public:
  // max_tokens: longer texts are cut (EOS kept) with a warning; Hugging Face's T5 uses 512.
  T5TextEncoder(const std::string& dir, const torch::Device& device, int max_tokens = 512);
  // Token ids of one text (EOS appended).
  std::vector<int64_t> tokenize(const std::string& text) const;
  struct Encoding {
    torch::Tensor hidden;  // (B, L, d_model) float32 on the device, zero on padding
    torch::Tensor mask;    // (B, L) bool, true on tokens
  };
  Encoding encode(const std::vector<std::string>& texts);
  int dim() const { return config_.d_model; }
  const T5Config& config() const { return config_; }
  const std::string& dir() const { return dir_; }
  const std::string& weights_file() const { return weights_file_; }
  // Identifies the encoder for feature caches: a hash of its weights, and one of config.json,
  // spiece.model and max_tokens.
  const std::string& weights_hash() const { return weights_hash_; }
  const std::string& config_hash() const { return config_hash_; }
  T5EncoderModelImpl& model() { return *model_; }

 private:
  std::string dir_, weights_file_, weights_hash_, config_hash_;
  T5Config config_;
  torch::Device device_;
  int max_tokens_;
  std::unique_ptr<data::SentencePieceTokenizer> tokenizer_;
  T5EncoderModel model_{nullptr};
};

// The weights file of a Hugging Face folder: model.safetensors, model.safetensors.index.json or
// pytorch_model.bin (an error listing them when none is there).
std::string t5_weights_file(const std::string& dir);

}  // namespace losatok::models
