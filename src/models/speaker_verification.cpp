// UniSpeech's ECAPA-TDNN speaker-verification head on WavLM hidden states (Desplanques et al.
// 2020; Chen et al. 2022), loading `wavlm_large_finetune.pth`: the SIM instrument.
#include "losatok/models/speaker_verification.h"

#include <torch/torch.h>

#include <filesystem>
#include <set>

#include "losatok/core/error.h"
#include "losatok/core/logging.h"
#include "losatok/io/weights.h"
#include "losatok/models/layers.h"

namespace fs = std::filesystem;
namespace F = torch::nn::functional;

namespace losatok::models {

namespace {

torch::nn::Conv1d conv1d(int in, int out, int kernel, int padding = 0, int dilation = 1) {
  return torch::nn::Conv1d(torch::nn::Conv1dOptions(in, out, kernel).padding(padding).dilation(dilation));
}

torch::Tensor run_conv(torch::nn::Conv1d c, const torch::Tensor& x) {
  return c->forward(x);
}

// Always the running statistics: the head is an instrument, whatever mode the module is in.
torch::Tensor run_bn(const torch::nn::BatchNorm1d& bn, const torch::Tensor& x) {
  return torch::batch_norm(x, bn->weight, bn->bias, bn->running_mean, bn->running_var, false, 0.0,
                           bn->options.eps(), false);
}

}  // namespace

EcapaTdnnConfig EcapaTdnnConfig::from_state_dict(const std::map<std::string, torch::Tensor>& w,
                                                 const std::string& source) {
  const auto need = [&](const std::string& k, int64_t dims) -> const torch::Tensor& {
    const auto it = w.find(k);
    if (it == w.end())
      throw Error("speaker verification checkpoint '" + source + "' has no " + k +
                  " (not UniSpeech's ECAPA-TDNN head)");
    if (it->second.dim() != dims)
      throw Error("speaker verification checkpoint '" + source + "': " + k + " has " +
                  std::to_string(it->second.dim()) + " dimensions, not " + std::to_string(dims));
    return it->second;
  };
  EcapaTdnnConfig c;
  const torch::Tensor& l1 = need("layer1.conv.weight", 3);
  c.channels = static_cast<int>(l1.size(0));
  c.feat_dim = static_cast<int>(l1.size(1));
  c.first_kernel = static_cast<int>(l1.size(2));
  c.num_states = static_cast<int>(need("feature_weight", 1).size(0));
  const int width = static_cast<int>(need("layer2.Res2Conv1dReluBn.convs.0.weight", 3).size(0));
  if (width <= 0 || c.channels % width != 0)
    throw Error("speaker verification checkpoint '" + source + "': Res2Net groups of " +
                std::to_string(width) + " do not split " + std::to_string(c.channels) + " channels");
  c.scale = c.channels / width;
  c.se_bottleneck = static_cast<int>(need("layer2.SE_Connect.linear1.weight", 2).size(0));
  c.cat_channels = static_cast<int>(need("conv.weight", 3).size(0));
  const torch::Tensor& att = need("pooling.linear1.weight", 3);
  c.attention_channels = static_cast<int>(att.size(0));
  c.global_context_att = att.size(1) == 3 * c.cat_channels;
  c.emb_dim = static_cast<int>(need("linear.weight", 2).size(0));
  return c;
}

Conv1dReluBnImpl::Conv1dReluBnImpl(int in, int out, int kernel, int padding, int dilation) {
  conv = register_module("conv", conv1d(in, out, kernel, padding, dilation));
  bn = register_module("bn", torch::nn::BatchNorm1d(out));
}

torch::Tensor Conv1dReluBnImpl::forward(const torch::Tensor& x) {
  return run_bn(bn, torch::relu(run_conv(conv, x)));
}

Res2Conv1dReluBnImpl::Res2Conv1dReluBnImpl(int channels, int kernel, int padding, int dilation, int scale)
    : width(channels / scale) {
  convs = register_module("convs", torch::nn::ModuleList());
  bns = register_module("bns", torch::nn::ModuleList());
  const int nums = scale == 1 ? 1 : scale - 1;
  for (int i = 0; i < nums; ++i) {
    convs->push_back(conv1d(width, width, kernel, padding, dilation));
    bns->push_back(torch::nn::BatchNorm1d(width));
  }
}

torch::Tensor Res2Conv1dReluBnImpl::forward(const torch::Tensor& x) {
  const std::vector<torch::Tensor> groups = x.split(width, 1);
  std::vector<torch::Tensor> out;
  torch::Tensor sp;
  for (std::size_t i = 0; i < convs->size(); ++i) {
    sp = i == 0 ? groups[0] : sp + groups[i];
    sp = run_bn(bns->ptr<torch::nn::BatchNorm1dImpl>(i),
                torch::relu(convs->ptr<torch::nn::Conv1dImpl>(i)->forward(sp)));
    out.push_back(sp);
  }
  if (groups.size() > convs->size()) out.push_back(groups[convs->size()]);  // the last group, untouched
  return torch::cat(out, 1);
}

SeConnectImpl::SeConnectImpl(int channels, int bottleneck) {
  linear1 = register_module("linear1", torch::nn::Linear(channels, bottleneck));
  linear2 = register_module("linear2", torch::nn::Linear(bottleneck, channels));
}

torch::Tensor SeConnectImpl::forward(const torch::Tensor& x) {
  const torch::Tensor s =
      torch::sigmoid(apply_linear(linear2, torch::relu(apply_linear(linear1, x.mean(2)))));
  return x * s.unsqueeze(2);
}

SeRes2BlockImpl::SeRes2BlockImpl(int in, int out, int kernel, int dilation, int scale, int se_bottleneck) {
  conv1 = register_module("Conv1dReluBn1", Conv1dReluBn(in, out, 1, 0, 1));
  res2 = register_module("Res2Conv1dReluBn", Res2Conv1dReluBn(out, kernel, dilation, dilation, scale));
  conv2 = register_module("Conv1dReluBn2", Conv1dReluBn(out, out, 1, 0, 1));
  se = register_module("SE_Connect", SeConnect(out, se_bottleneck));
  if (in != out) shortcut = register_module("shortcut", conv1d(in, out, 1));
}

torch::Tensor SeRes2BlockImpl::forward(const torch::Tensor& x) {
  const torch::Tensor residual = shortcut ? run_conv(shortcut, x) : x;
  return se->forward(conv2->forward(res2->forward(conv1->forward(x)))) + residual;
}

AttentiveStatsPoolImpl::AttentiveStatsPoolImpl(int in, int attention_channels, bool global_context_att_)
    : global_context_att(global_context_att_) {
  linear1 = register_module("linear1", conv1d(global_context_att ? 3 * in : in, attention_channels, 1));
  linear2 = register_module("linear2", conv1d(attention_channels, in, 1));
}

torch::Tensor AttentiveStatsPoolImpl::forward(const torch::Tensor& x) {
  torch::Tensor x_in = x;
  if (global_context_att) {
    const torch::Tensor mean = x.mean(-1, true).expand_as(x);
    const torch::Tensor std = torch::sqrt(x.var(-1, true, true) + 1e-10).expand_as(x);
    x_in = torch::cat({x, mean, std}, 1);
  }
  const torch::Tensor alpha = torch::softmax(run_conv(linear2, torch::tanh(run_conv(linear1, x_in))), 2);
  const torch::Tensor mean = (alpha * x).sum(2);
  const torch::Tensor var = (alpha * x.pow(2)).sum(2) - mean.pow(2);
  return torch::cat({mean, torch::sqrt(var.clamp_min(1e-9))}, 1);
}

SpeakerVerificationImpl::SpeakerVerificationImpl(const Wav2Vec2Config& enc, const EcapaTdnnConfig& head)
    : encoder_config(enc), config(head) {
  if (head.feat_dim != enc.embed_dim || head.num_states != enc.layers + 1)
    throw Error("speaker verification: the head reads " + std::to_string(head.num_states) +
                " states of width " + std::to_string(head.feat_dim) + ", the encoder gives " +
                std::to_string(enc.layers + 1) + " of " + std::to_string(enc.embed_dim));
  auto extract = register_module("feature_extract", std::make_shared<torch::nn::Module>());
  encoder = extract->register_module("model", Wav2Vec2Encoder(enc));
  feature_weight = register_parameter("feature_weight", torch::zeros({head.num_states}));
  const int c = head.channels;
  layer1 =
      register_module("layer1", Conv1dReluBn(head.feat_dim, c, head.first_kernel, head.first_kernel / 2, 1));
  layer2 = register_module("layer2", SeRes2Block(c, c, 3, 2, head.scale, head.se_bottleneck));
  layer3 = register_module("layer3", SeRes2Block(c, c, 3, 3, head.scale, head.se_bottleneck));
  layer4 = register_module("layer4", SeRes2Block(c, c, 3, 4, head.scale, head.se_bottleneck));
  conv = register_module("conv", conv1d(3 * c, head.cat_channels, 1));
  pooling = register_module(
      "pooling", AttentiveStatsPool(head.cat_channels, head.attention_channels, head.global_context_att));
  bn = register_module("bn", torch::nn::BatchNorm1d(2 * head.cat_channels));
  linear = register_module("linear", torch::nn::Linear(2 * head.cat_channels, head.emb_dim));
}

torch::Tensor SpeakerVerificationImpl::features(const torch::Tensor& wave16k) {
  const std::vector<torch::Tensor> states = encoder->hidden_states(wave16k.to(device, torch::kFloat));
  const torch::Tensor w = torch::softmax(feature_weight, -1).view({-1, 1, 1, 1});
  const torch::Tensor x = (w * torch::stack(states)).sum(0).transpose(1, 2) + 1e-6;  // (B, C, T)
  return F::instance_norm(x, F::InstanceNormFuncOptions().eps(1e-5));
}

torch::Tensor SpeakerVerificationImpl::embed(const torch::Tensor& wave16k) {
  torch::NoGradGuard no_grad;
  const torch::Tensor x = features(wave16k);
  const torch::Tensor out2 = layer2->forward(layer1->forward(x));
  const torch::Tensor out3 = layer3->forward(out2);
  const torch::Tensor out4 = layer4->forward(out3);
  const torch::Tensor out = torch::relu(run_conv(conv, torch::cat({out2, out3, out4}, 1)));
  const torch::Tensor e = apply_linear(linear, run_bn(bn, pooling->forward(out)));  // (B, emb_dim)
  return wave16k.dim() == 1 ? e.squeeze(0) : e;
}

torch::Tensor speaker_similarity(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.sizes() != b.sizes() || a.dim() < 1 || a.dim() > 2)
    throw Error("speaker similarity: embeddings of shapes " + std::to_string(a.dim()) + "-D (" +
                std::to_string(a.numel()) + ") and " + std::to_string(b.dim()) + "-D (" +
                std::to_string(b.numel()) + ") do not pair up (two (D) or two (B, D))");
  return torch::cosine_similarity(a, b, -1, 1e-8);
}

SpeakerVerification load_speaker_verification(const std::string& path, const torch::Device& device,
                                              int max_distance) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec))
    throw Error("speaker verification checkpoint '" + path +
                "' does not exist (wavlm_large_finetune.pth from UniSpeech's speaker verification release)");
  io::WeightSet set = io::read_weights(path);
  // torch.save({"model": state_dict, ...}) reads as "model.<name>"; a bare state dict as "<name>".
  const bool nested = set.tensors.count("model.feature_weight") > 0;
  io::TensorMap w;
  for (auto& [name, t] : set.tensors)
    if (!nested || name.rfind("model.", 0) == 0) w[nested ? name.substr(6) : name] = t;
  const std::string level = nested ? "model." : "";

  Wav2Vec2Config enc = Wav2Vec2Config::from_state_dict(w, "feature_extract.model.", path);
  enc.normalize_waveform = true;
  enc.max_distance = max_distance;
  const EcapaTdnnConfig head = EcapaTdnnConfig::from_state_dict(w, path);
  SpeakerVerification model(enc, head);

  // Only the model's own tensors: the WavLM's mask_emb and any training state stay behind.
  io::TensorMap mine;
  for (const auto& item : model->named_parameters(true)) {
    const auto it = w.find(item.key());
    if (it == w.end())
      throw Error("speaker verification checkpoint '" + path + "' has no " + level + item.key());
    mine[item.key()] = it->second;
  }
  for (const auto& item : model->named_buffers(true)) {
    const auto it = w.find(item.key());
    if (it != w.end()) {
      mine[item.key()] = it->second;
    } else if (item.key().find("num_batches_tracked") == std::string::npos) {  // unused in eval
      throw Error("speaker verification checkpoint '" + path + "' has no " + level + item.key());
    }
  }
  const io::LoadReport report = io::load_weights(*model, mine, path, {/*strict=*/false, ""});
  if (!report.mismatched.empty())
    throw Error("speaker verification checkpoint '" + path + "': " + report.mismatched.front());
  io::log_load_report(path, report);
  freeze(*model);
  model->to(device);
  model->device = device;
  spdlog::info("speaker verification {}: encoder {} x {} ({} heads{}), ECAPA-TDNN {} -> {}", path, enc.layers,
               enc.embed_dim, enc.heads, enc.relative_position_bias ? ", relative bias" : "", head.channels,
               head.emb_dim);
  return model;
}

}  // namespace losatok::models
