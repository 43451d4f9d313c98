// LAION-CLAP's HTSAT + RoBERTa from the published architectures (HTS-AT, Chen et al. 2022; Swin,
// Liu et al. 2021; RoBERTa, Liu et al. 2019), loading LAION's checkpoint layout.
#include "losatok/models/clap.h"

#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <limits>

#include "losatok/audio/torchlibrosa.h"
#include "losatok/core/error.h"
#include "losatok/core/logging.h"
#include "losatok/io/weights.h"
#include "losatok/models/layers.h"

namespace fs = std::filesystem;
namespace F = torch::nn::functional;

namespace losatok::models {

namespace {

// A plain module that only names its children, for the checkpoint's intermediate levels
// (attention.self, pooler, ...).
std::shared_ptr<torch::nn::Module> container(torch::nn::Module& parent, const std::string& name) {
  return parent.register_module(name, std::make_shared<torch::nn::Module>());
}

torch::nn::LayerNorm layer_norm(int dim, double eps = 1e-5) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim}).eps(eps));
}

torch::nn::Linear linear(int in, int out, bool bias = true) {
  return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(bias));
}

torch::Tensor mlp_forward(torch::nn::Sequential& seq, const torch::Tensor& x) {
  const auto& first = seq[0]->as<torch::nn::LinearImpl>();
  const auto& last = seq[2]->as<torch::nn::LinearImpl>();
  return torch::linear(torch::relu(torch::linear(x, first->weight, first->bias)), last->weight, last->bias);
}

}  // namespace

torch::Tensor clap_fit_clip(const torch::Tensor& wave, int64_t clip_samples) {
  if (wave.dim() != 1 || wave.size(0) == 0)
    throw Error("CLAP: a clip must be a non-empty 1-D wave, not of shape " + std::to_string(wave.dim()) +
                "-D / " + std::to_string(wave.numel()) + " samples");
  const int64_t n = wave.size(0);
  if (n >= clip_samples) return wave.narrow(0, 0, clip_samples);
  const torch::Tensor repeated = wave.repeat({clip_samples / n});
  return F::pad(repeated, F::PadFuncOptions({0, clip_samples - repeated.size(0)}));
}

// --- HTSAT -----------------------------------------------------------------------------------

torch::Tensor swin_relative_position_index(int window) {
  const int n = window * window;
  torch::Tensor idx = torch::empty({n, n}, torch::kLong);
  auto a = idx.accessor<int64_t, 2>();
  for (int p = 0; p < n; ++p)
    for (int q = 0; q < n; ++q)
      a[p][q] =
          (p / window - q / window + window - 1) * (2 * window - 1) + (p % window - q % window + window - 1);
  return idx;
}

torch::Tensor swin_shifted_window_mask(int resolution, int window, int shift) {
  // Region labels 0..8 of the shifted map: [0, r - w), [r - w, r - s), [r - s, r) per axis.
  const auto band = [&](int v) { return v < resolution - window ? 0 : v < resolution - shift ? 1 : 2; };
  const int g = resolution / window, n = window * window;
  torch::Tensor mask = torch::zeros({g * g, n, n});
  auto a = mask.accessor<float, 3>();
  for (int wy = 0; wy < g; ++wy)
    for (int wx = 0; wx < g; ++wx)
      for (int p = 0; p < n; ++p)
        for (int q = 0; q < n; ++q) {
          const int rp = band(wy * window + p / window) * 3 + band(wx * window + p % window);
          const int rq = band(wy * window + q / window) * 3 + band(wx * window + q % window);
          a[wy * g + wx][p][q] = rp == rq ? 0.0f : -100.0f;
        }
  return mask;
}

SwinWindowAttentionImpl::SwinWindowAttentionImpl(int dim, int heads, int window)
    : heads(heads), window(window) {
  relative_position_bias_table = register_parameter(
      "relative_position_bias_table", torch::zeros({(2 * window - 1) * (2 * window - 1), heads}));
  relative_position_index = register_buffer("relative_position_index", swin_relative_position_index(window));
  qkv = register_module("qkv", linear(dim, 3 * dim));
  proj = register_module("proj", linear(dim, dim));
}

torch::Tensor SwinWindowAttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& mask) {
  const int64_t bw = x.size(0), n = x.size(1), c = x.size(2), hd = c / heads;
  const torch::Tensor t = apply_linear(qkv, x).view({bw, n, 3, heads, hd}).permute({2, 0, 3, 1, 4});
  const torch::Tensor q = t[0] * std::pow(static_cast<double>(hd), -0.5), k = t[1], v = t[2];
  torch::Tensor attn = torch::matmul(q, k.transpose(-2, -1));  // (B nW, H, n, n)
  const torch::Tensor bias =
      relative_position_bias_table.index_select(0, relative_position_index.view(-1)).view({n, n, heads});
  attn = attn + bias.permute({2, 0, 1}).unsqueeze(0);
  if (mask.defined()) {
    const int64_t nw = mask.size(0);
    attn = (attn.view({bw / nw, nw, heads, n, n}) + mask.unsqueeze(1).unsqueeze(0)).view({bw, heads, n, n});
  }
  const torch::Tensor out = torch::matmul(attn.softmax(-1), v).transpose(1, 2).reshape({bw, n, c});
  return apply_linear(proj, out);
}

SwinMlpImpl::SwinMlpImpl(int dim, int hidden) {
  fc1 = register_module("fc1", linear(dim, hidden));
  fc2 = register_module("fc2", linear(hidden, dim));
}

SwinBlockImpl::SwinBlockImpl(int dim, int resolution, int heads, int window, bool shifted, int mlp_hidden)
    : resolution(resolution), window(window), shift(shifted ? window / 2 : 0) {
  if (resolution <= window) {  // one window covers the map: nothing to shift
    this->window = resolution;
    shift = 0;
  }
  if (resolution % this->window != 0)
    throw Error("HTSAT: a " + std::to_string(resolution) + "^2 map does not split into " +
                std::to_string(this->window) + "^2 windows");
  norm1 = register_module("norm1", layer_norm(dim));
  attn = register_module("attn", SwinWindowAttention(dim, heads, this->window));
  norm2 = register_module("norm2", layer_norm(dim));
  mlp = register_module("mlp", SwinMlp(dim, mlp_hidden));
  if (shift > 0)
    attn_mask = register_buffer("attn_mask", swin_shifted_window_mask(resolution, this->window, shift));
}

torch::Tensor SwinBlockImpl::forward(const torch::Tensor& x) {
  const int64_t b = x.size(0), l = x.size(1), c = x.size(2), r = resolution, w = window, g = r / w;
  torch::Tensor h = norm1->forward(x).view({b, r, r, c});
  if (shift > 0) h = torch::roll(h, {-shift, -shift}, {1, 2});
  torch::Tensor win = h.view({b, g, w, g, w, c}).permute({0, 1, 3, 2, 4, 5}).reshape({-1, w * w, c});
  win = attn->forward(win, attn_mask);
  h = win.view({b, g, g, w, w, c}).permute({0, 1, 3, 2, 4, 5}).reshape({b, r, r, c});
  if (shift > 0) h = torch::roll(h, {shift, shift}, {1, 2});
  torch::Tensor y = x + h.reshape({b, l, c});
  const torch::Tensor m = torch::gelu(apply_linear(mlp->fc1, norm2->forward(y)));
  return y + apply_linear(mlp->fc2, m);
}

PatchMergingImpl::PatchMergingImpl(int dim) {
  reduction = register_module("reduction", linear(4 * dim, 2 * dim, /*bias=*/false));
  norm = register_module("norm", layer_norm(4 * dim));
}

torch::Tensor PatchMergingImpl::forward(const torch::Tensor& x, int resolution) {
  using torch::indexing::Slice;
  const int64_t b = x.size(0), c = x.size(2);
  const torch::Tensor h = x.view({b, resolution, resolution, c});
  const auto at = [&](int dy, int dx) {
    return h.index({Slice(), Slice(dy, torch::indexing::None, 2), Slice(dx, torch::indexing::None, 2)});
  };
  const torch::Tensor cat = torch::cat({at(0, 0), at(1, 0), at(0, 1), at(1, 1)}, -1).view({b, -1, 4 * c});
  return apply_linear(reduction, norm->forward(cat));
}

SwinStageImpl::SwinStageImpl(const HtsatConfig& c, int index, int resolution) : resolution(resolution) {
  const int dim = c.embed_dim << index;
  blocks = register_module("blocks", torch::nn::ModuleList());
  for (int j = 0; j < c.depths[index]; ++j)
    blocks->push_back(
        SwinBlock(dim, resolution, c.heads[index], c.window, j % 2 == 1, c.mlp_hidden << index));
  if (index + 1 < static_cast<int>(c.depths.size()))
    downsample = register_module("downsample", PatchMerging(dim));
}

torch::Tensor SwinStageImpl::forward(const torch::Tensor& x) {
  torch::Tensor h = x;
  for (const auto& blk : *blocks) h = blk->as<SwinBlockImpl>()->forward(h);
  return downsample ? downsample->forward(h, resolution) : h;
}

PatchEmbedImpl::PatchEmbedImpl(int patch, int embed_dim) {
  proj =
      register_module("proj", torch::nn::Conv2d(torch::nn::Conv2dOptions(1, embed_dim, patch).stride(patch)));
  norm = register_module("norm", layer_norm(embed_dim));
}

HtsatImpl::HtsatImpl(const HtsatConfig& c) : config(c) {
  auto [re, im] = audio::torchlibrosa_stft_kernels(c.n_fft);
  auto stft = container(*container(*this, "spectrogram_extractor"), "stft");
  conv_real = container(*stft, "conv_real")->register_buffer("weight", re);
  conv_imag = container(*stft, "conv_imag")->register_buffer("weight", im);
  melW = container(*this, "logmel_extractor")
             ->register_buffer("melW",
                               audio::librosa_slaney_mel(c.sample_rate, c.n_fft, c.mel_bins, c.fmin, c.fmax));
  bn0 = register_module("bn0", torch::nn::BatchNorm2d(c.mel_bins));
  patch_embed = register_module("patch_embed", PatchEmbed(c.patch, c.embed_dim));
  layers = register_module("layers", torch::nn::ModuleList());
  int resolution = c.spec_size / c.patch;
  for (int i = 0; i < static_cast<int>(c.depths.size()); ++i, resolution /= 2)
    layers->push_back(SwinStage(c, i, resolution));
  norm = register_module("norm", layer_norm(c.num_features()));
  tscam_conv = register_module(
      "tscam_conv",
      torch::nn::Conv2d(torch::nn::Conv2dOptions(c.num_features(), c.num_classes, {c.tscam_kernel_freq, 3})
                            .padding({0, 1})));
  head = register_module("head", linear(c.num_classes, c.num_classes));
}

torch::Tensor HtsatImpl::log_mel(const torch::Tensor& wave) {
  return audio::torchlibrosa_log_mel(
      audio::torchlibrosa_power_spectrogram(wave, conv_real, conv_imag, config.hop), melW);
}

torch::Tensor HtsatImpl::image(const torch::Tensor& log_mel) {
  // bn0 normalises the mel bins: (B, M, T) is its (N, C, L) layout.
  torch::Tensor x = torch::batch_norm(log_mel.transpose(1, 2), bn0->weight, bn0->bias, bn0->running_mean,
                                      bn0->running_var, /*training=*/false, 0.0, bn0->options.eps(),
                                      /*cudnn_enabled=*/false)
                        .transpose(1, 2)
                        .unsqueeze(1);  // (B, 1, T, M)
  const int64_t b = x.size(0), m = x.size(3), ratio = config.freq_ratio();
  const int64_t target_t = static_cast<int64_t>(config.spec_size) * ratio;
  if (x.size(2) > target_t || m != config.mel_bins)
    throw Error("HTSAT: a log-mel of " + std::to_string(x.size(2)) + " frames x " + std::to_string(m) +
                " bins does not fit its " + std::to_string(target_t) + " x " +
                std::to_string(config.mel_bins) + " input");
  if (x.size(2) < target_t)
    x = F::interpolate(x, F::InterpolateFuncOptions()
                              .size(std::vector<int64_t>{target_t, m})
                              .mode(torch::kBicubic)
                              .align_corners(true));
  // Row chunk * M + mel, column = time within the chunk.
  return x.reshape({b, ratio, target_t / ratio, m})
      .permute({0, 1, 3, 2})
      .reshape({b, 1, ratio * m, target_t / ratio});
}

torch::Tensor HtsatImpl::embedding(const torch::Tensor& image) {
  torch::Tensor x = patch_embed->proj->forward(image).flatten(2).transpose(1, 2);
  x = patch_embed->norm->forward(x);
  for (const auto& stage : *layers) x = stage->as<SwinStageImpl>()->forward(x);
  return norm->forward(x).mean(1);  // latent_output: the average over every token
}

// --- RoBERTa ---------------------------------------------------------------------------------

RobertaEmbeddingsImpl::RobertaEmbeddingsImpl(const RobertaConfig& c) : pad_id(c.pad_id) {
  word_embeddings = register_module("word_embeddings", torch::nn::Embedding(c.vocab_size, c.hidden));
  position_embeddings =
      register_module("position_embeddings", torch::nn::Embedding(c.max_positions, c.hidden));
  token_type_embeddings =
      register_module("token_type_embeddings", torch::nn::Embedding(c.type_vocab, c.hidden));
  LayerNorm = register_module("LayerNorm", layer_norm(c.hidden, c.layer_norm_eps));
}

torch::Tensor RobertaEmbeddingsImpl::forward(const torch::Tensor& ids) {
  // RoBERTa's positions: pad_id + 1, pad_id + 2, ... over non-pad tokens, pad_id on padding.
  const torch::Tensor not_pad = ids.ne(pad_id).to(torch::kLong);
  const torch::Tensor positions = torch::cumsum(not_pad, 1) * not_pad + pad_id;
  if (positions.max().item<int64_t>() >= position_embeddings->weight.size(0))
    throw Error("RoBERTa: " + std::to_string(ids.size(1)) + " tokens exceed the model's " +
                std::to_string(position_embeddings->weight.size(0) - pad_id - 1) + " positions");
  const torch::Tensor x = torch::embedding(word_embeddings->weight, ids) +
                          torch::embedding(position_embeddings->weight, positions) +
                          token_type_embeddings->weight[0];
  return LayerNorm->forward(x);
}

RobertaLayerImpl::RobertaLayerImpl(const RobertaConfig& c) : heads(c.heads) {
  auto attention = container(*this, "attention");
  auto self = container(*attention, "self");
  query = self->register_module("query", linear(c.hidden, c.hidden));
  key = self->register_module("key", linear(c.hidden, c.hidden));
  value = self->register_module("value", linear(c.hidden, c.hidden));
  auto attention_output = container(*attention, "output");
  attention_dense = attention_output->register_module("dense", linear(c.hidden, c.hidden));
  attention_norm = attention_output->register_module("LayerNorm", layer_norm(c.hidden, c.layer_norm_eps));
  intermediate_dense =
      container(*this, "intermediate")->register_module("dense", linear(c.hidden, c.intermediate));
  auto output = container(*this, "output");
  output_dense = output->register_module("dense", linear(c.intermediate, c.hidden));
  output_norm = output->register_module("LayerNorm", layer_norm(c.hidden, c.layer_norm_eps));
}

torch::Tensor RobertaLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& bias) {
  const int64_t b = x.size(0), l = x.size(1), d = x.size(2), hd = d / heads;
  const auto split = [&](const torch::nn::Linear& proj) {
    return apply_linear(proj, x).view({b, l, heads, hd}).transpose(1, 2);
  };
  const torch::Tensor scores =
      torch::matmul(split(query), split(key).transpose(-1, -2)) / std::sqrt(static_cast<double>(hd)) + bias;
  const torch::Tensor ctx =
      torch::matmul(scores.softmax(-1), split(value)).transpose(1, 2).reshape({b, l, d});
  const torch::Tensor h = attention_norm->forward(apply_linear(attention_dense, ctx) + x);
  const torch::Tensor m = torch::gelu(apply_linear(intermediate_dense, h));
  return output_norm->forward(apply_linear(output_dense, m) + h);
}

RobertaModelImpl::RobertaModelImpl(const RobertaConfig& c) : config(c) {
  embeddings = register_module("embeddings", RobertaEmbeddings(c));
  layer = container(*this, "encoder")->register_module("layer", torch::nn::ModuleList());
  for (int i = 0; i < c.layers; ++i) layer->push_back(RobertaLayer(c));
  pooler_dense = container(*this, "pooler")->register_module("dense", linear(c.hidden, c.hidden));
}

torch::Tensor RobertaModelImpl::forward(const torch::Tensor& ids, const torch::Tensor& mask) {
  torch::Tensor x = embeddings->forward(ids);
  // Hugging Face's extended mask: the float32 minimum on padded keys.
  const torch::Tensor bias = (1.0 - mask.to(torch::kFloat32).view({ids.size(0), 1, 1, ids.size(1)})) *
                             std::numeric_limits<float>::lowest();
  for (const auto& l : *layer) x = l->as<RobertaLayerImpl>()->forward(x, bias);
  return torch::tanh(apply_linear(pooler_dense, x.select(1, 0)));
}

// --- CLAP ------------------------------------------------------------------------------------

ClapImpl::ClapImpl(const ClapConfig& c) : config(c) {
  audio_branch = register_module("audio_branch", Htsat(c.audio));
  text_branch = register_module("text_branch", RobertaModel(c.text));
  const auto projection = [&](int in) {
    return torch::nn::Sequential(linear(in, c.joint_dim), torch::nn::ReLU(),
                                 linear(c.joint_dim, c.joint_dim));
  };
  audio_projection = register_module("audio_projection", projection(c.audio.num_features()));
  text_projection = register_module("text_projection", projection(c.text.hidden));
  // LAION's MLPLayers: Linear, ReLU, Dropout, Linear as `sequential.{0,3}`.
  const auto transform = [&](const std::string& name) {
    auto t = container(*this, name);
    t->register_module("sequential",
                       torch::nn::Sequential(linear(c.joint_dim, c.joint_dim), torch::nn::ReLU(),
                                             torch::nn::Dropout(0.1), linear(c.joint_dim, c.joint_dim)));
    return t;
  };
  audio_transform = transform("audio_transform");
  text_transform = transform("text_transform");
  logit_scale_a = register_parameter("logit_scale_a", torch::full({}, std::log(1 / 0.07)));
  logit_scale_t = register_parameter("logit_scale_t", torch::full({}, std::log(1 / 0.07)));
}

torch::Tensor ClapImpl::log_mel(const torch::Tensor& wave_48k) {
  if (wave_48k.dim() != 2)
    throw Error("CLAP: audio must be (B, N) at 48 kHz, not " + std::to_string(wave_48k.dim()) + "-D");
  std::vector<torch::Tensor> rows;
  for (int64_t i = 0; i < wave_48k.size(0); ++i)
    rows.push_back(clap_fit_clip(wave_48k[i], config.audio.clip_samples));
  torch::NoGradGuard no_grad;
  return audio_branch->log_mel(torch::stack(rows).to(device, torch::kFloat32));
}

torch::Tensor ClapImpl::embedding(const torch::Tensor& wave_48k) {
  torch::NoGradGuard no_grad;
  return audio_branch->embedding(audio_branch->image(log_mel(wave_48k)));
}

torch::Tensor ClapImpl::audio_embedding(const torch::Tensor& wave_48k) {
  torch::NoGradGuard no_grad;
  return F::normalize(mlp_forward(audio_projection, embedding(wave_48k)), F::NormalizeFuncOptions().dim(-1));
}

torch::Tensor ClapImpl::audio_embedding(const std::vector<torch::Tensor>& waves_48k) {
  std::vector<torch::Tensor> rows;
  for (const auto& w : waves_48k) rows.push_back(clap_fit_clip(w.to(torch::kCPU), config.audio.clip_samples));
  if (rows.empty()) throw Error("CLAP: no clips to embed");
  return audio_embedding(torch::stack(rows));
}

std::pair<torch::Tensor, torch::Tensor> ClapImpl::tokenize(const std::vector<std::string>& texts) const {
  if (!tokenizer) throw Error("CLAP: no tokenizer (load the model with load_clap)");
  const int64_t b = static_cast<int64_t>(texts.size()), l = config.context_length;
  torch::Tensor ids = torch::empty({b, l}, torch::kLong), mask = torch::empty({b, l}, torch::kLong);
  for (int64_t i = 0; i < b; ++i) {
    std::vector<int64_t> m;
    const std::vector<int64_t> row = tokenizer->encode_padded(texts[i], static_cast<int>(l), &m);
    ids[i].copy_(torch::tensor(row, torch::kLong));
    mask[i].copy_(torch::tensor(m, torch::kLong));
  }
  return {ids, mask};
}

torch::Tensor ClapImpl::text_embedding(const std::vector<std::string>& texts) {
  const auto [ids, mask] = tokenize(texts);
  return text_embedding(ids, mask);
}

torch::Tensor ClapImpl::text_embedding(const torch::Tensor& ids, const torch::Tensor& mask) {
  torch::NoGradGuard no_grad;
  const torch::Tensor pooled = text_branch->forward(ids.to(device), mask.to(device));
  return F::normalize(mlp_forward(text_projection, pooled), F::NormalizeFuncOptions().dim(-1));
}

// --- loading ---------------------------------------------------------------------------------

ClapConfig ClapConfig::from_state_dict(const std::map<std::string, torch::Tensor>& w,
                                       const std::string& source) {
  const auto where = "CLAP checkpoint '" + source + "'";
  const auto need = [&](const std::string& name, int64_t dims) -> const torch::Tensor& {
    const auto it = w.find(name);
    if (it == w.end())
      throw Error(where + " has no " + name + " (not a LAION-CLAP HTSAT + RoBERTa checkpoint)");
    if (it->second.dim() != dims)
      throw Error(where + ": " + name + " has " + std::to_string(it->second.dim()) + " dimensions, not " +
                  std::to_string(dims));
    return it->second;
  };
  const auto has_prefix = [&](const std::string& prefix) {
    const auto it = w.lower_bound(prefix);
    return it != w.end() && it->first.compare(0, prefix.size(), prefix) == 0;
  };
  ClapConfig c;
  HtsatConfig& a = c.audio;
  const torch::Tensor& pe = need("audio_branch.patch_embed.proj.weight", 4);
  if (pe.size(1) != 1 || pe.size(2) != pe.size(3))
    throw Error(where + ": audio_branch.patch_embed.proj.weight is not a square one-channel patch kernel");
  a.embed_dim = static_cast<int>(pe.size(0));
  a.patch = static_cast<int>(pe.size(2));
  a.mel_bins = static_cast<int>(need("audio_branch.bn0.weight", 1).size(0));
  if (a.spec_size % a.mel_bins != 0)
    throw Error(where + ": " + std::to_string(a.mel_bins) + " mel bins do not divide HTSAT's spec_size 256");
  a.depths.clear();
  a.heads.clear();
  for (int i = 0; has_prefix("audio_branch.layers." + std::to_string(i) + "."); ++i) {
    const std::string stage = "audio_branch.layers." + std::to_string(i) + ".blocks.";
    int depth = 0;
    while (has_prefix(stage + std::to_string(depth) + ".")) ++depth;
    if (depth == 0) throw Error(where + ": audio_branch.layers." + std::to_string(i) + " has no blocks");
    a.depths.push_back(depth);
    a.heads.push_back(static_cast<int>(need(stage + "0.attn.relative_position_bias_table", 2).size(1)));
  }
  if (a.depths.empty()) throw Error(where + " has no audio_branch.layers.* (not an HTSAT audio branch)");
  const int64_t table = need("audio_branch.layers.0.blocks.0.attn.relative_position_bias_table", 2).size(0);
  a.window = static_cast<int>(std::lround((std::sqrt(static_cast<double>(table)) + 1) / 2));
  if ((2 * a.window - 1) * (2 * a.window - 1) != table)
    throw Error(where + ": relative_position_bias_table has " + std::to_string(table) +
                " rows, not (2 window - 1)^2");
  a.mlp_hidden = static_cast<int>(need("audio_branch.layers.0.blocks.0.mlp.fc1.weight", 2).size(0));
  const torch::Tensor& tscam = need("audio_branch.tscam_conv.weight", 4);
  a.num_classes = static_cast<int>(tscam.size(0));
  a.tscam_kernel_freq = static_cast<int>(tscam.size(2));
  if ((a.spec_size / a.patch) >> (a.depths.size() - 1) <= 0)
    throw Error(where + ": " + std::to_string(a.depths.size()) + " HTSAT stages merge the map away");

  RobertaConfig& t = c.text;
  const torch::Tensor& we = need("text_branch.embeddings.word_embeddings.weight", 2);
  t.vocab_size = static_cast<int>(we.size(0));
  t.hidden = static_cast<int>(we.size(1));
  if (t.hidden % 64 != 0)
    throw Error(where + ": RoBERTa width " + std::to_string(t.hidden) +
                " is not a multiple of the head size 64");
  t.heads = t.hidden / 64;
  t.max_positions = static_cast<int>(need("text_branch.embeddings.position_embeddings.weight", 2).size(0));
  t.type_vocab = static_cast<int>(need("text_branch.embeddings.token_type_embeddings.weight", 2).size(0));
  t.layers = 0;
  while (has_prefix("text_branch.encoder.layer." + std::to_string(t.layers) + ".")) ++t.layers;
  if (t.layers == 0) throw Error(where + " has no text_branch.encoder.layer.* (not a RoBERTa text branch)");
  t.intermediate = static_cast<int>(need("text_branch.encoder.layer.0.intermediate.dense.weight", 2).size(0));
  if (t.max_positions < c.context_length + t.pad_id + 1)
    throw Error(where + ": " + std::to_string(t.max_positions) +
                " RoBERTa positions are fewer than 77 tokens need");
  c.joint_dim = static_cast<int>(need("audio_projection.0.weight", 2).size(0));
  return c;
}

Clap load_clap(const std::string& checkpoint, const std::string& tokenizer_dir, const torch::Device& device) {
  std::error_code ec;
  if (!fs::is_regular_file(checkpoint, ec))
    throw Error("CLAP checkpoint '" + checkpoint +
                "' does not exist (630k-audioset-best.pt from the LAION-CLAP releases on Hugging Face, "
                "lukewys/laion_clap)");
  const std::string vocab = (fs::path(tokenizer_dir) / "vocab.json").string();
  const std::string merges = (fs::path(tokenizer_dir) / "merges.txt").string();
  for (const auto& f : {vocab, merges})
    if (!fs::is_regular_file(f, ec))
      throw Error(
          "CLAP tokenizer file '" + f +
          "' does not exist (vocab.json and merges.txt from the roberta-base folder on Hugging Face)");
  auto tokenizer = std::make_shared<const data::ByteLevelBpe>(vocab, merges);

  io::WeightSet set = io::read_weights(checkpoint);
  io::TensorMap w;
  for (auto& [name, t] : set.tensors) w[name.rfind("module.", 0) == 0 ? name.substr(7) : name] = t;
  for (const auto& [name, t] : w)
    if (name.find("fusion_model") != std::string::npos || name.find("mel_conv1d") != std::string::npos ||
        name.find("mel_conv2d") != std::string::npos)
      throw Error("CLAP checkpoint '" + checkpoint + "' is a feature-fusion model (it has " + name +
                  "): only the non-fusion 630k-audioset-best.pt is supported");
  // Hugging Face's bookkeeping buffers: newer transformers do not save them.
  w.erase("text_branch.embeddings.position_ids");
  w.erase("text_branch.embeddings.token_type_ids");

  const ClapConfig config = ClapConfig::from_state_dict(w, checkpoint);
  Clap model(config);
  // Recomputed buffers: absent ones take the recomputation, present ones must match it (the
  // front-end constants are not in the file; melW and the STFT kernels check them).
  for (const auto& item : model->named_buffers()) {
    const std::string& name = item.key();
    const torch::Tensor& mine = item.value();
    const bool recomputed = name.find("attn_mask") != std::string::npos ||
                            name.find("relative_position_index") != std::string::npos ||
                            name.find("melW") != std::string::npos ||
                            name.find(".stft.") != std::string::npos;
    if (!recomputed) continue;
    const auto it = w.find(name);
    if (it == w.end()) {
      w[name] = mine;
      continue;
    }
    const torch::Tensor theirs = it->second;
    bool same = theirs.sizes() == mine.sizes();
    double diff = 0;
    if (same) {
      diff = (theirs.to(torch::kFloat64) - mine.to(torch::kFloat64)).abs().max().item<double>();
      // float buffers to 1e-5 of their largest value (float32 rounding of float64 formulas)
      same = diff <= (mine.is_floating_point() ? 1e-5 * mine.abs().max().item<double>() : 0.0);
    }
    if (!same)
      throw Error(
          "CLAP checkpoint '" + checkpoint + "': " + name + " differs from its recomputation (" +
          (theirs.sizes() == mine.sizes() ? "max difference " + std::to_string(diff) : "another shape") +
          "): not LAION's 48 kHz, 1024-point, " + std::to_string(config.audio.mel_bins) +
          "-mel HTSAT front end");
  }
  if (tokenizer->vocab_size() > config.text.vocab_size)
    throw Error("CLAP tokenizer '" + vocab + "' has " + std::to_string(tokenizer->vocab_size()) +
                " tokens, more than the checkpoint's " + std::to_string(config.text.vocab_size));
  const io::LoadReport report = io::load_weights(*model, w, checkpoint);
  io::log_load_report(checkpoint, report);
  freeze(*model);
  model->to(device);  // float32 as built (int64 buffers stay int64)
  model->device = device;
  model->tokenizer = std::move(tokenizer);
  const HtsatConfig& a = config.audio;
  spdlog::info("CLAP {}: HTSAT embed_dim {}, {} stages, window {}; RoBERTa {} x {}; joint {}", checkpoint,
               a.embed_dim, a.depths.size(), a.window, config.text.layers, config.text.hidden,
               config.joint_dim);
  return model;
}

}  // namespace losatok::models
