// UTMOS22 strong (sarulab-speech/UTMOS22 `strong/`, SpeechMOS's standalone form): wav2vec 2.0
// base features + fixed domain and judge embeddings -> BLSTM -> frame scores -> MOS.
#include "losatok/models/utmos.h"

#include <torch/torch.h>

#include <filesystem>

#include "losatok/core/error.h"
#include "losatok/core/logging.h"
#include "losatok/io/weights.h"
#include "losatok/models/layers.h"

namespace fs = std::filesystem;

namespace losatok::models {

namespace {

const torch::Tensor& need(const std::map<std::string, torch::Tensor>& w, const std::string& name,
                          int64_t dims, const std::string& source) {
  const auto it = w.find(name);
  if (it == w.end())
    throw Error("UTMOS checkpoint '" + source + "' has no " + name + " (not a UTMOS22 strong checkpoint)");
  if (it->second.dim() != dims)
    throw Error("UTMOS checkpoint '" + source + "': " + name + " has " + std::to_string(it->second.dim()) +
                " dimensions, not " + std::to_string(dims));
  return it->second;
}

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

}  // namespace

UtmosConfig UtmosConfig::from_state_dict(const std::map<std::string, torch::Tensor>& w,
                                         const std::string& source, int heads) {
  UtmosConfig c;
  c.ssl = Wav2Vec2Config::from_state_dict(w, "wav2vec2.", source, heads);
  // wav2vec_small.pt's task cfg has normalize: False, so UTMOS22 feeds the raw waveform.
  c.ssl.normalize_waveform = false;
  c.domain_dim = static_cast<int>(need(w, "domain_emb", 2, source).size(1));
  c.judge_dim = static_cast<int>(need(w, "judge_emb", 2, source).size(1));
  c.lstm_hidden = static_cast<int>(need(w, "blstm.weight_hh_l0", 2, source).size(1));
  c.proj_hidden = static_cast<int>(need(w, "projection.0.weight", 2, source).size(0));
  const int64_t lstm_in = need(w, "blstm.weight_ih_l0", 2, source).size(1);
  if (lstm_in != c.ssl.embed_dim + c.domain_dim + c.judge_dim)
    throw Error("UTMOS checkpoint '" + source + "': blstm.weight_ih_l0 takes " + std::to_string(lstm_in) +
                " inputs, not wav2vec2 " + std::to_string(c.ssl.embed_dim) + " + domain " +
                std::to_string(c.domain_dim) + " + judge " + std::to_string(c.judge_dim));
  if (w.count("blstm.weight_ih_l1"))
    throw Error("UTMOS checkpoint '" + source +
                "' has a second BLSTM layer (blstm.weight_ih_l1): UTMOS22 strong has one");
  return c;
}

Utmos22StrongImpl::Utmos22StrongImpl(const UtmosConfig& c) : config(c) {
  wav2vec2 = register_module("wav2vec2", Wav2Vec2Encoder(c.ssl));
  domain_emb = register_parameter("domain_emb", torch::zeros({1, c.domain_dim}), false);
  judge_emb = register_parameter("judge_emb", torch::zeros({1, c.judge_dim}), false);
  const int in = c.ssl.embed_dim + c.domain_dim + c.judge_dim;
  blstm = register_module(
      "blstm",
      torch::nn::LSTM(torch::nn::LSTMOptions(in, c.lstm_hidden).batch_first(true).bidirectional(true)));
  projection = register_module("projection",
                               torch::nn::Sequential(torch::nn::Linear(2 * c.lstm_hidden, c.proj_hidden),
                                                     torch::nn::ReLU(), torch::nn::Linear(c.proj_hidden, 1)));
}

torch::Tensor Utmos22StrongImpl::ssl_features(const torch::Tensor& waves) {
  torch::NoGradGuard no_grad;
  return wav2vec2->forward(waves.to(domain_emb.device(), torch::kFloat));
}

torch::Tensor Utmos22StrongImpl::frame_scores(const torch::Tensor& ssl) {
  torch::NoGradGuard no_grad;
  const int64_t b = ssl.size(0), f = ssl.size(1);
  // The two embeddings repeat on every frame: the BLSTM sees them concatenated to each SSL vector.
  const torch::Tensor x = torch::cat(
      {ssl, domain_emb.unsqueeze(1).expand({b, f, -1}), judge_emb.unsqueeze(1).expand({b, f, -1})}, 2);
  const torch::Tensor h = std::get<0>(blstm->forward(x));  // (B, F, 2 lstm_hidden)
  return projection->forward(h).squeeze(-1);
}

torch::Tensor Utmos22StrongImpl::forward(const torch::Tensor& waves) {
  if (waves.dim() != 2)
    throw Error(std::string(kUtmosName) + ": expected waves (B, T), got " + std::to_string(waves.dim()) +
                " dimensions");
  return frame_scores(ssl_features(waves)).mean(1) * 2 + 3;
}

double Utmos22StrongImpl::predict(const torch::Tensor& wave16k) {
  if (wave16k.dim() != 1)
    throw Error(std::string(kUtmosName) + ": expected one 16 kHz clip (T), got " +
                std::to_string(wave16k.dim()) + " dimensions");
  // The first conv needs 400 samples (25 ms) for one frame.
  if (wave16k.size(0) < 400)
    throw Error(std::string(kUtmosName) + ": a clip of " + std::to_string(wave16k.size(0)) +
                " samples is shorter than wav2vec 2.0's first frame (400 samples at 16 kHz)");
  return forward(wave16k.unsqueeze(0)).item<double>();
}

std::vector<double> Utmos22StrongImpl::predict(const std::vector<torch::Tensor>& waves16k) {
  std::vector<double> out;
  out.reserve(waves16k.size());
  for (const auto& w : waves16k) out.push_back(predict(w));
  return out;
}

// --- loading ---------------------------------------------------------------------------------

std::map<std::string, torch::Tensor> utmos_from_lightning(const std::map<std::string, torch::Tensor>& w,
                                                          const std::string& source) {
  const std::string ssl = "feature_extractors.0.ssl_model.", rnn = "output_layers.0.decoder_rnn.",
                    net = "output_layers.1.net.";
  std::map<std::string, torch::Tensor> out;
  if (!w.count(ssl + "post_extract_proj.weight") && !w.count(ssl + "encoder.layer_norm.weight")) return out;
  // The default config puts a phoneme encoder (with its own `embedding`) at feature_extractors.1
  // and the domain table at .2; the standalone predictor has no phoneme input.
  if (w.count("feature_extractors.2.embedding.weight") ||
      w.count("feature_extractors.1.encoder.weight_ih_l0"))
    throw Error("UTMOS checkpoint '" + source +
                "' has a phoneme encoder (feature_extractors.2 / feature_extractors.1.encoder): only the "
                "phoneme-free strong learner (config wo_phoneme) is supported");
  const auto row = [&](const std::string& table, int id) {
    const auto it = w.find(table);
    if (it == w.end()) throw Error("UTMOS checkpoint '" + source + "' has no " + table);
    if (it->second.dim() != 2 || it->second.size(0) <= id)
      throw Error("UTMOS checkpoint '" + source + "': " + table + " has no row " + std::to_string(id));
    return it->second.narrow(0, id, 1).clone();
  };
  out["domain_emb"] = row("feature_extractors.1.embedding.weight", kUtmosDomainId);
  out["judge_emb"] = row("output_layers.0.judge_embedding.weight", kUtmosJudgeId);
  for (const auto& [name, t] : w) {
    if (starts_with(name, ssl)) {
      out["wav2vec2." + name.substr(ssl.size())] = t;
    } else if (starts_with(name, rnn)) {
      out["blstm." + name.substr(rnn.size())] = t;
    } else if (starts_with(name, net + "0.")) {
      out["projection.0." + name.substr(net.size() + 2)] = t;
    } else if (starts_with(name, net + "3.")) {
      out["projection.2." + name.substr(net.size() + 2)] = t;
    }
  }
  return out;
}

Utmos22Strong load_utmos(const std::string& path, const torch::Device& device, int heads) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec))
    throw Error(
        "UTMOS checkpoint '" + path +
        "' does not exist (utmos22_strong_step7459_v1.pt from the tarepan/SpeechMOS v1.0.0 release, or "
        "epoch=3-step=7459.ckpt from the sarulab-speech/UTMOS-demo Space)");
  io::TensorMap w = io::read_weights(path).tensors;
  std::string layout = "SpeechMOS";
  if (io::TensorMap mapped = utmos_from_lightning(w, path); !mapped.empty()) {
    w = std::move(mapped);
    layout = "UTMOS22 Lightning";
  }
  const UtmosConfig config = UtmosConfig::from_state_dict(w, path, heads);
  Utmos22Strong model(config);
  // The encoder takes its tensors and leaves the rest of a fairseq model (mask_emb; quantizer and
  // final_proj in an unstripped one), which is pretraining-only.
  load_wav2vec2_weights(model->wav2vec2, w, "wav2vec2.", path);
  io::TensorMap head;
  for (const auto& [name, t] : w)
    if (!starts_with(name, "wav2vec2.")) head[name] = t;
  io::LoadOptions lenient;
  lenient.strict = false;
  const io::LoadReport report = io::load_weights(*model, head, path, lenient);
  std::vector<std::string> problems = report.mismatched;
  for (const auto& name : report.unexpected) problems.push_back("unexpected " + name);
  for (const auto& name : report.missing)
    if (!starts_with(name, "wav2vec2.")) problems.push_back("no " + name);
  if (!problems.empty()) {
    std::string list;
    for (const auto& p : problems) list += (list.empty() ? "" : "; ") + p;
    throw Error("UTMOS checkpoint '" + path + "' does not fit UTMOS22 strong: " + list);
  }
  freeze(*model);
  model->to(device);
  const Wav2Vec2Config& s = config.ssl;
  spdlog::info("{} {} ({} layout): wav2vec2 {} x {} ({} heads), BLSTM {}, projection {}", kUtmosName, path,
               layout, s.layers, s.embed_dim, s.heads, config.lstm_hidden, config.proj_hidden);
  return model;
}

}  // namespace losatok::models
