// The wav2vec 2.0 encoder family (Baevski et al. 2020; WavLM, Chen et al. 2022) as fairseq's
// models/wav2vec/wav2vec2.py and s3prl's upstream/wavlm/{WavLM.py, modules.py, expert.py}
// (UniSpeech's copy) build it, frozen and eval only (no masking, no quantizer, no dropout): the
// instruments' speech encoders (UTMOS22's wav2vec2 base, the SV head's WavLM-Large). Module names
// are fairseq's, so a `model` state dict loads as it is.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include <array>
#include <map>
#include <string>
#include <vector>

namespace losatok::models {

struct Wav2Vec2Config {
  // (dim, kernel, stride) per conv of the feature extractor; fairseq's default = 320x downsampling.
  std::vector<std::array<int, 3>> conv_layers{{512, 10, 5}, {512, 3, 2}, {512, 3, 2}, {512, 3, 2},
                                              {512, 3, 2},  {512, 2, 2}, {512, 2, 2}};
  // fairseq's extractor_mode: "layer_norm" (a LayerNorm after every conv: WavLM-Large,
  // wav2vec2-large-lv60) = true; "default" (GroupNorm(dim, dim) after the first conv only:
  // wav2vec2 base, WavLM-Base) = false.
  bool extractor_layer_norm = false;
  bool conv_bias = false;
  int embed_dim = 768;
  int layers = 12;
  int heads = 12;  // in the shapes only for WavLM: see from_state_dict
  int ffn_dim = 3072;
  int pos_conv_kernel = 128;
  int pos_conv_groups = 16;
  // Pre-LN transformer (WavLM-Large, large-lv60); false = post-LN as wav2vec2 base.
  bool layer_norm_first = false;
  // The checkpoint cfg's `normalize` (WavLM-Large: true; wav2vec2 base: false): each wave row is
  // layer-normed (zero mean, unit variance, eps 1e-5) before the convs, as s3prl's expert does.
  // Not in the shapes: the caller sets it. Applied inside hidden_states / forward.
  bool normalize_waveform = false;
  // WavLM only: the gated relative position bias (T5 buckets) of layer 0, shared by all layers.
  bool relative_position_bias = false;
  int num_buckets = 320;
  int max_distance = 800;  // WavLM-Large's; not in the shapes
  bool gru_rel_pos = true;

  int extractor_dim() const { return conv_layers.back()[0]; }
  // Sizes and both modes from the shapes and keys under `prefix` (e.g. "feature_extract.model.",
  // or "" for a bare fairseq `model` dict): conv_layers (dims and kernels from the weights;
  // strides are not in the shapes: kernel / 2 for kernels >= 4, else 2, which is fairseq's
  // table), extractor mode (conv_layers.0.2.1.weight vs conv_layers.0.2.weight), conv_bias,
  // embed/ffn dims, layers, pos_conv kernel and groups, relative bias (num_buckets from
  // encoder.layers.0.self_attn.relative_attention_bias.weight) and gru_rel_pos (grep_linear).
  // layer_norm_first is NOT in the shapes either: it is inferred from the extractor mode
  // (layer_norm <=> pre-LN, true of every released wav2vec2 / WavLM checkpoint); override after.
  // heads: `heads` when > 0, else WavLM's bias table / grep_a shows them, else 16 for embed
  // 1024, 12 for 768, else embed / 64 (at least 1). normalize_waveform stays false and
  // max_distance 800: set them after.
  // A missing tensor is an error naming `source` and the key.
  static Wav2Vec2Config from_state_dict(const std::map<std::string, torch::Tensor>& w,
                                        const std::string& prefix, const std::string& source, int heads = 0);
};

// feature_extractor.conv_layers.{i}: "0" the conv; "2" GroupNorm (default mode, i = 0) or
// "2.1" LayerNorm over channels (layer_norm mode); exact GELU.
struct Wav2Vec2ConvLayerImpl : torch::nn::Module {
  Wav2Vec2ConvLayerImpl(int in, const std::array<int, 3>& dks, bool bias, bool layer_norm, bool group_norm);
  torch::Tensor forward(const torch::Tensor& x);  // (B, in, T) -> (B, dim, T')
  torch::nn::Conv1d conv{nullptr};
  torch::nn::GroupNorm group_norm{nullptr};
  torch::nn::LayerNorm layer_norm{nullptr};
};
TORCH_MODULE(Wav2Vec2ConvLayer);

// encoder.layers.{i}.self_attn: q/k/v/out_proj; in WavLM also grep_linear (head_dim -> 8) and
// grep_a (1, H, 1, 1) on every layer, relative_attention_bias (num_buckets, H) on layer 0 only.
struct Wav2Vec2AttentionImpl : torch::nn::Module {
  Wav2Vec2AttentionImpl(const Wav2Vec2Config& c, bool has_relative_attention_bias);
  // x (B, T, C); pos_bias (B, H, T, T) ungated, or undefined (computed here on layer 0).
  torch::Tensor forward(const torch::Tensor& x, torch::Tensor& pos_bias);
  torch::Tensor compute_bias(int64_t length) const;  // (H, T, T), T5 bidirectional buckets
  Wav2Vec2Config config;
  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, out_proj{nullptr};
  torch::nn::Embedding relative_attention_bias{nullptr};
  torch::nn::Linear grep_linear{nullptr};
  torch::Tensor grep_a;
};
TORCH_MODULE(Wav2Vec2Attention);

struct Wav2Vec2LayerImpl : torch::nn::Module {
  Wav2Vec2LayerImpl(const Wav2Vec2Config& c, bool has_relative_attention_bias);
  torch::Tensor forward(const torch::Tensor& x, torch::Tensor& pos_bias);  // (B, T, C)
  bool layer_norm_first;
  Wav2Vec2Attention self_attn{nullptr};
  torch::nn::LayerNorm self_attn_layer_norm{nullptr}, final_layer_norm{nullptr};
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(Wav2Vec2Layer);

// encoder.pos_conv.0: a grouped conv under weight norm over dim 2 (weight_g (1, 1, K),
// weight_v (C, C / groups, K)); the weight is computed from g and v at each call. SamePad
// drops the last frame for an even kernel; then GELU.
struct Wav2Vec2PosConvImpl : torch::nn::Module {
  Wav2Vec2PosConvImpl(int dim, int kernel, int groups);
  torch::Tensor forward(const torch::Tensor& x);  // (B, T, C) -> (B, T, C)
  int kernel, groups;
  torch::Tensor weight_g, weight_v, bias;
};
TORCH_MODULE(Wav2Vec2PosConv);

struct Wav2Vec2EncoderImpl : torch::nn::Module {
  explicit Wav2Vec2EncoderImpl(const Wav2Vec2Config& c);

  // wave (B, N) or (N) float at 16 kHz (rows of one length: no padding mask) ->
  // layers + 1 tensors (B, T, embed_dim), T = the conv stack's frames, in s3prl's convention
  // (its hooks on the inputs of encoder.layers[i] and the output of encoder):
  //   [i] for i < layers: the input of layer i, i.e. [0] the transformer input (features +
  //       pos_conv, then encoder.layer_norm in post-LN mode only) and [i] the raw output of
  //       layer i - 1 (no final norm);
  //   [layers]: the encoder's output = forward(wave): the last layer's output, with
  //       encoder.layer_norm applied after it in pre-LN mode (fairseq's TransformerEncoder.forward).
  // This is what UniSpeech's ECAPA-TDNN weighs (25 states for WavLM-Large). (Newer fairseq pads
  // the frames to an even count inside the encoder and masks the pad as a key: no change here.)
  std::vector<torch::Tensor> hidden_states(const torch::Tensor& wave);
  // fairseq's extract_features(source, mask=False)["x"] (B, T, embed_dim).
  torch::Tensor forward(const torch::Tensor& wave);
  // The conv stack's output after layer_norm and post_extract_proj (B, T, embed_dim).
  torch::Tensor features(const torch::Tensor& wave);

  Wav2Vec2Config config;
  torch::nn::ModuleList conv_layers{nullptr};        // registered as feature_extractor.conv_layers
  torch::nn::LayerNorm layer_norm{nullptr};          // over the extractor's channels
  torch::nn::Linear post_extract_proj{nullptr};      // only when extractor_dim != embed_dim
  Wav2Vec2PosConv pos_conv{nullptr};                 // encoder.pos_conv.0
  torch::nn::ModuleList layers{nullptr};             // encoder.layers
  torch::nn::LayerNorm encoder_layer_norm{nullptr};  // encoder.layer_norm
};
TORCH_MODULE(Wav2Vec2Encoder);

// Loads `encoder`'s parameters from the tensors named `prefix` + its names (a fairseq `model`
// dict: prefix ""; UniSpeech's SV checkpoint: "feature_extract.model."), ignoring everything else
// there (mask_emb, quantizer, final_proj, a head). A missing or wrongly shaped tensor is an
// error naming `source` and the key.
void load_wav2vec2_weights(Wav2Vec2Encoder& encoder, const std::map<std::string, torch::Tensor>& tensors,
                           const std::string& prefix, const std::string& source);

}  // namespace losatok::models
