// The wav2vec 2.0 / WavLM encoder from fairseq's wav2vec2.py and s3prl's WavLM.py / modules.py
// (the eval paths: F.multi_head_attention_forward with WavLM's gated relative bias as its mask).
#include "losatok/models/wav2vec2.h"

#include <torch/torch.h>

#include <cmath>

#include "losatok/core/error.h"
#include "losatok/io/weights.h"

namespace F = torch::nn::functional;

namespace losatok::models {

namespace {

torch::nn::LayerNorm layer_norm(int dim) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim}).eps(1e-5));
}

torch::Tensor linear(const torch::nn::Linear& l, const torch::Tensor& x) {
  return torch::linear(x, l->weight, l->bias);
}

torch::Tensor ln(const torch::nn::LayerNorm& n, const torch::Tensor& x) {
  return torch::layer_norm(x, n->options.normalized_shape(), n->weight, n->bias, n->options.eps());
}

torch::Tensor as_batch(const torch::Tensor& wave, const char* who) {
  if ((wave.dim() != 1 && wave.dim() != 2) || wave.size(-1) == 0)
    throw Error(std::string(who) + ": the wave must be (N) or (B, N) samples at 16 kHz, not of " +
                std::to_string(wave.dim()) + " dimensions / " + std::to_string(wave.numel()) + " samples");
  return wave.dim() == 1 ? wave.unsqueeze(0) : wave;
}

}  // namespace

// --- config ----------------------------------------------------------------------------------

Wav2Vec2Config Wav2Vec2Config::from_state_dict(const std::map<std::string, torch::Tensor>& w,
                                               const std::string& prefix, const std::string& source,
                                               int heads) {
  const auto has = [&](const std::string& k) { return w.count(prefix + k) > 0; };
  const auto need = [&](const std::string& k, int64_t dims) -> const torch::Tensor& {
    const auto it = w.find(prefix + k);
    if (it == w.end())
      throw Error("'" + source + "' has no " + prefix + k + " (not a wav2vec2 / WavLM encoder)");
    if (it->second.dim() != dims)
      throw Error("'" + source + "': " + prefix + k + " has " + std::to_string(it->second.dim()) +
                  " dimensions, not " + std::to_string(dims));
    return it->second;
  };
  Wav2Vec2Config c;
  c.conv_layers.clear();
  for (int i = 0; has("feature_extractor.conv_layers." + std::to_string(i) + ".0.weight"); ++i) {
    const torch::Tensor& k = need("feature_extractor.conv_layers." + std::to_string(i) + ".0.weight", 3);
    const int kernel = static_cast<int>(k.size(2));
    // Strides are not in the file: fairseq's table is (10, 5), (3, 2), (2, 2).
    c.conv_layers.push_back({static_cast<int>(k.size(0)), kernel, kernel >= 4 ? kernel / 2 : 2});
  }
  if (c.conv_layers.empty()) need("feature_extractor.conv_layers.0.0.weight", 3);
  c.conv_bias = has("feature_extractor.conv_layers.0.0.bias");
  c.extractor_layer_norm = has("feature_extractor.conv_layers.0.2.1.weight");
  if (!c.extractor_layer_norm) need("feature_extractor.conv_layers.0.2.weight", 1);
  const torch::Tensor& v = need("encoder.pos_conv.0.weight_v", 3);
  c.embed_dim = static_cast<int>(v.size(0));
  c.pos_conv_kernel = static_cast<int>(v.size(2));
  if (v.size(1) == 0 || c.embed_dim % v.size(1) != 0)
    throw Error("'" + source + "': " + prefix +
                "encoder.pos_conv.0.weight_v is not a grouped conv of width " + std::to_string(c.embed_dim));
  c.pos_conv_groups = static_cast<int>(c.embed_dim / v.size(1));
  c.layers = 0;
  while (has("encoder.layers." + std::to_string(c.layers) + ".self_attn.q_proj.weight")) ++c.layers;
  if (c.layers == 0) need("encoder.layers.0.self_attn.q_proj.weight", 2);
  c.ffn_dim = static_cast<int>(need("encoder.layers.0.fc1.weight", 2).size(0));
  c.relative_position_bias = has("encoder.layers.0.self_attn.relative_attention_bias.weight");
  c.gru_rel_pos = has("encoder.layers.0.self_attn.grep_linear.weight");
  // The released checkpoints pair the extractor mode with the transformer's.
  c.layer_norm_first = c.extractor_layer_norm;
  int found = 0;  // heads where the shapes show them (WavLM's bias table, its gate)
  if (c.relative_position_bias) {
    const torch::Tensor& table = need("encoder.layers.0.self_attn.relative_attention_bias.weight", 2);
    c.num_buckets = static_cast<int>(table.size(0));
    found = static_cast<int>(table.size(1));
  } else if (c.gru_rel_pos) {
    found = static_cast<int>(need("encoder.layers.0.self_attn.grep_a", 4).size(1));
  }
  c.heads = heads > 0             ? heads
            : found > 0           ? found
            : c.embed_dim == 1024 ? 16
            : c.embed_dim == 768  ? 12
                                  : std::max(1, c.embed_dim / 64);
  if (c.embed_dim % c.heads != 0)
    throw Error("'" + source + "': width " + std::to_string(c.embed_dim) + " does not split into " +
                std::to_string(c.heads) + " heads");
  return c;
}

// --- modules ---------------------------------------------------------------------------------

Wav2Vec2ConvLayerImpl::Wav2Vec2ConvLayerImpl(int in, const std::array<int, 3>& dks, bool bias,
                                             bool layer_norm_mode, bool group_norm_mode) {
  conv = register_module(
      "0", torch::nn::Conv1d(torch::nn::Conv1dOptions(in, dks[0], dks[1]).stride(dks[2]).bias(bias)));
  if (group_norm_mode)
    group_norm =
        register_module("2", torch::nn::GroupNorm(torch::nn::GroupNormOptions(dks[0], dks[0]).eps(1e-5)));
  if (layer_norm_mode) {
    // fairseq: Sequential(TransposeLast, Fp32LayerNorm, TransposeLast) -> "2.1".
    auto holder = register_module("2", std::make_shared<torch::nn::Module>());
    layer_norm = holder->register_module("1", losatok::models::layer_norm(dks[0]));
  }
}

torch::Tensor Wav2Vec2ConvLayerImpl::forward(const torch::Tensor& x) {
  torch::Tensor y = conv->forward(x);
  if (group_norm) y = group_norm->forward(y);
  if (layer_norm) y = ln(layer_norm, y.transpose(1, 2)).transpose(1, 2);
  return torch::gelu(y);
}

Wav2Vec2AttentionImpl::Wav2Vec2AttentionImpl(const Wav2Vec2Config& c, bool has_relative_attention_bias)
    : config(c) {
  const int d = c.embed_dim;
  q_proj = register_module("q_proj", torch::nn::Linear(d, d));
  k_proj = register_module("k_proj", torch::nn::Linear(d, d));
  v_proj = register_module("v_proj", torch::nn::Linear(d, d));
  out_proj = register_module("out_proj", torch::nn::Linear(d, d));
  if (c.relative_position_bias) {
    if (has_relative_attention_bias)
      relative_attention_bias =
          register_module("relative_attention_bias", torch::nn::Embedding(c.num_buckets, c.heads));
    if (c.gru_rel_pos) {
      grep_linear = register_module("grep_linear", torch::nn::Linear(d / c.heads, 8));
      grep_a = register_parameter("grep_a", torch::ones({1, c.heads, 1, 1}));
    }
  }
}

torch::Tensor Wav2Vec2AttentionImpl::compute_bias(int64_t length) const {
  // T5's bidirectional buckets: half per direction, exact below max_exact, then log-spaced up to
  // max_distance. The float ops mirror WavLM's so the bucket edges round the same way.
  const torch::Tensor pos = torch::arange(length, torch::kLong);
  torch::Tensor rel = pos.unsqueeze(0) - pos.unsqueeze(1);  // memory - context
  const int64_t half = config.num_buckets / 2;
  torch::Tensor buckets = (rel > 0).to(torch::kLong) * half;
  rel = rel.abs();
  const int64_t max_exact = half / 2;
  const torch::Tensor is_small = rel < max_exact;
  torch::Tensor large =
      max_exact + (torch::log(rel.to(torch::kFloat) / static_cast<double>(max_exact)) /
                   std::log(static_cast<double>(config.max_distance) / static_cast<double>(max_exact)) *
                   static_cast<double>(half - max_exact))
                      .to(torch::kLong);
  large = torch::minimum(large, torch::full_like(large, half - 1));
  buckets = buckets + torch::where(is_small, rel, large);
  const torch::Tensor& table = relative_attention_bias->weight;
  return torch::embedding(table, buckets.to(table.device())).permute({2, 0, 1});  // (H, T, T)
}

torch::Tensor Wav2Vec2AttentionImpl::forward(const torch::Tensor& x, torch::Tensor& pos_bias) {
  const int64_t B = x.size(0), T = x.size(1), H = config.heads, d = config.embed_dim / config.heads;
  if (relative_attention_bias && !pos_bias.defined())
    pos_bias = compute_bias(T).unsqueeze(0).expand({B, H, T, T});
  torch::Tensor bias;
  if (pos_bias.defined()) {
    bias = pos_bias;
    if (grep_linear) {
      // The gate reads the attention's input (not the projected query), split into heads.
      const torch::Tensor heads = x.view({B, T, H, d}).permute({0, 2, 1, 3});
      const torch::Tensor g = torch::sigmoid(linear(grep_linear, heads).view({B, H, T, 2, 4}).sum(-1));
      const torch::Tensor gate_a = g.narrow(-1, 0, 1), gate_b = g.narrow(-1, 1, 1);
      bias = (gate_a * (gate_b * grep_a - 1.0) + 2.0) * pos_bias;  // (B, H, T, T)
    }
  }
  const auto split = [&](const torch::Tensor& t) { return t.view({B, T, H, d}).transpose(1, 2); };
  const torch::Tensor q = split(linear(q_proj, x)) / std::sqrt(static_cast<double>(d));
  const torch::Tensor k = split(linear(k_proj, x)), v = split(linear(v_proj, x));
  torch::Tensor scores = torch::matmul(q, k.transpose(-2, -1));
  if (bias.defined()) scores = scores + bias;
  const torch::Tensor out =
      torch::matmul(torch::softmax(scores, -1), v).transpose(1, 2).reshape({B, T, H * d});
  return linear(out_proj, out);
}

Wav2Vec2LayerImpl::Wav2Vec2LayerImpl(const Wav2Vec2Config& c, bool has_relative_attention_bias)
    : layer_norm_first(c.layer_norm_first) {
  self_attn = register_module("self_attn", Wav2Vec2Attention(c, has_relative_attention_bias));
  self_attn_layer_norm = register_module("self_attn_layer_norm", layer_norm(c.embed_dim));
  fc1 = register_module("fc1", torch::nn::Linear(c.embed_dim, c.ffn_dim));
  fc2 = register_module("fc2", torch::nn::Linear(c.ffn_dim, c.embed_dim));
  final_layer_norm = register_module("final_layer_norm", layer_norm(c.embed_dim));
}

torch::Tensor Wav2Vec2LayerImpl::forward(const torch::Tensor& x, torch::Tensor& pos_bias) {
  const auto ffn = [&](const torch::Tensor& h) { return linear(fc2, torch::gelu(linear(fc1, h))); };
  if (layer_norm_first) {
    const torch::Tensor h = x + self_attn->forward(ln(self_attn_layer_norm, x), pos_bias);
    return h + ffn(ln(final_layer_norm, h));
  }
  const torch::Tensor h = ln(self_attn_layer_norm, x + self_attn->forward(x, pos_bias));
  return ln(final_layer_norm, h + ffn(h));
}

Wav2Vec2PosConvImpl::Wav2Vec2PosConvImpl(int dim, int kernel_, int groups_)
    : kernel(kernel_), groups(groups_) {
  weight_g = register_parameter("weight_g", torch::ones({1, 1, kernel}));
  weight_v = register_parameter("weight_v", torch::randn({dim, dim / groups, kernel}) * 0.02);
  bias = register_parameter("bias", torch::zeros({dim}));
}

torch::Tensor Wav2Vec2PosConvImpl::forward(const torch::Tensor& x) {
  const torch::Tensor weight = torch::_weight_norm(weight_v, weight_g, 2);  // norm over all dims but 2
  torch::Tensor y = torch::conv1d(x.transpose(1, 2), weight, bias, 1, kernel / 2, 1, groups);
  if (kernel % 2 == 0) y = y.narrow(2, 0, y.size(2) - 1);  // SamePad
  return torch::gelu(y).transpose(1, 2);
}

Wav2Vec2EncoderImpl::Wav2Vec2EncoderImpl(const Wav2Vec2Config& c) : config(c) {
  if (c.conv_layers.empty()) throw Error("wav2vec2: no feature extractor convs");
  if (c.heads <= 0 || c.embed_dim % c.heads != 0)
    throw Error("wav2vec2: width " + std::to_string(c.embed_dim) + " does not split into " +
                std::to_string(c.heads) + " heads");
  auto extractor = register_module("feature_extractor", std::make_shared<torch::nn::Module>());
  conv_layers = extractor->register_module("conv_layers", torch::nn::ModuleList());
  int in = 1;
  for (std::size_t i = 0; i < c.conv_layers.size(); ++i) {
    conv_layers->push_back(Wav2Vec2ConvLayer(in, c.conv_layers[i], c.conv_bias, c.extractor_layer_norm,
                                             !c.extractor_layer_norm && i == 0));
    in = c.conv_layers[i][0];
  }
  layer_norm = register_module("layer_norm", losatok::models::layer_norm(c.extractor_dim()));
  if (c.extractor_dim() != c.embed_dim)
    post_extract_proj =
        register_module("post_extract_proj", torch::nn::Linear(c.extractor_dim(), c.embed_dim));
  auto encoder = register_module("encoder", std::make_shared<torch::nn::Module>());
  auto pos = encoder->register_module("pos_conv", std::make_shared<torch::nn::Module>());
  pos_conv = pos->register_module("0", Wav2Vec2PosConv(c.embed_dim, c.pos_conv_kernel, c.pos_conv_groups));
  layers = encoder->register_module("layers", torch::nn::ModuleList());
  for (int i = 0; i < c.layers; ++i) layers->push_back(Wav2Vec2Layer(c, i == 0));
  encoder_layer_norm = encoder->register_module("layer_norm", losatok::models::layer_norm(c.embed_dim));
}

torch::Tensor Wav2Vec2EncoderImpl::features(const torch::Tensor& wave) {
  torch::Tensor x = as_batch(wave, "wav2vec2").to(torch::kFloat);
  int64_t frames = x.size(1);
  for (const auto& [dim, kernel, stride] : config.conv_layers)
    frames = frames < kernel ? 0 : (frames - kernel) / stride + 1;
  if (frames < 1)
    throw Error("wav2vec2: a wave of " + std::to_string(x.size(1)) +
                " samples is shorter than one frame of the conv stack");
  if (config.normalize_waveform) x = torch::layer_norm(x, {x.size(1)});
  x = x.unsqueeze(1);  // (B, 1, N)
  for (const auto& m : *conv_layers) x = m->as<Wav2Vec2ConvLayerImpl>()->forward(x);
  x = ln(layer_norm, x.transpose(1, 2));  // (B, T, extractor_dim)
  if (post_extract_proj) x = linear(post_extract_proj, x);
  return x;
}

std::vector<torch::Tensor> Wav2Vec2EncoderImpl::hidden_states(const torch::Tensor& wave) {
  torch::Tensor x = features(wave);
  x = x + pos_conv->forward(x);
  if (!config.layer_norm_first) x = ln(encoder_layer_norm, x);
  std::vector<torch::Tensor> states{x};
  torch::Tensor pos_bias;  // WavLM: layer 0's ungated bias, reused by every layer
  for (const auto& m : *layers) {
    x = m->as<Wav2Vec2LayerImpl>()->forward(x, pos_bias);
    states.push_back(x);
  }
  if (config.layer_norm_first) states.back() = ln(encoder_layer_norm, x);
  return states;
}

torch::Tensor Wav2Vec2EncoderImpl::forward(const torch::Tensor& wave) {
  return hidden_states(wave).back();
}

void load_wav2vec2_weights(Wav2Vec2Encoder& encoder, const std::map<std::string, torch::Tensor>& tensors,
                           const std::string& prefix, const std::string& source) {
  io::TensorMap mine;
  for (const auto& p : encoder->named_parameters(true)) {
    const auto it = tensors.find(prefix + p.key());
    if (it == tensors.end()) throw Error("checkpoint '" + source + "' has no " + prefix + p.key());
    mine[p.key()] = it->second;
  }
  io::load_weights(*encoder, mine, source);
}

}  // namespace losatok::models
