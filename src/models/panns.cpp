// PANNs CNN14 from its published architecture (audioset_tagging_cnn's Cnn14): log-mel with a
// per-bin batch norm, six conv blocks, mean over frequency, max + mean over time, fc1, the
// AudioSet head. Evaluation mode only (no SpecAugment, dropout off).
#include "losatok/models/panns.h"

#include <torch/torch.h>

#include <filesystem>

#include "losatok/audio/torchlibrosa.h"
#include "losatok/core/error.h"
#include "losatok/io/weights.h"
#include "losatok/models/layers.h"

namespace fs = std::filesystem;

namespace losatok::models {

Cnn14ConvBlockImpl::Cnn14ConvBlockImpl(int64_t in, int64_t out) {
  namespace nn = torch::nn;
  conv1 = register_module("conv1", nn::Conv2d(nn::Conv2dOptions(in, out, 3).padding(1).bias(false)));
  conv2 = register_module("conv2", nn::Conv2d(nn::Conv2dOptions(out, out, 3).padding(1).bias(false)));
  bn1 = register_module("bn1", nn::BatchNorm2d(out));
  bn2 = register_module("bn2", nn::BatchNorm2d(out));
}

torch::Tensor Cnn14ConvBlockImpl::forward(const torch::Tensor& x, int64_t pool) {
  torch::Tensor h = torch::relu(bn1->forward(conv1->forward(x)));
  h = torch::relu(bn2->forward(conv2->forward(h)));
  return pool > 1 ? torch::avg_pool2d(h, {pool, pool}) : h;
}

Cnn14Impl::Cnn14Impl(const Cnn14FrontEnd& fe, const std::vector<int64_t>& c, int64_t fc, int64_t classes)
    : front_end(fe) {
  std::tie(conv_real, conv_imag) = audio::torchlibrosa_stft_kernels(fe.window);
  mel_w = audio::librosa_slaney_mel(fe.sample_rate, fe.window, fe.mel_bins, fe.fmin, fe.fmax);
  if (c.size() != 6) throw Error("cnn14: expected 6 block widths, got " + std::to_string(c.size()));
  bn0 = register_module("bn0", torch::nn::BatchNorm2d(fe.mel_bins));
  conv_block1 = register_module("conv_block1", Cnn14ConvBlock(1, c[0]));
  conv_block2 = register_module("conv_block2", Cnn14ConvBlock(c[0], c[1]));
  conv_block3 = register_module("conv_block3", Cnn14ConvBlock(c[1], c[2]));
  conv_block4 = register_module("conv_block4", Cnn14ConvBlock(c[2], c[3]));
  conv_block5 = register_module("conv_block5", Cnn14ConvBlock(c[3], c[4]));
  conv_block6 = register_module("conv_block6", Cnn14ConvBlock(c[4], c[5]));
  fc1 = register_module("fc1", torch::nn::Linear(c[5], fc));
  fc_audioset = register_module("fc_audioset", torch::nn::Linear(fc, classes));
}

torch::Tensor Cnn14Impl::log_mel(const torch::Tensor& wave) const {
  return audio::torchlibrosa_log_mel(
      audio::torchlibrosa_power_spectrogram(wave, conv_real, conv_imag, front_end.hop),
      mel_w);  // (B, T, mel_bins)
}

Cnn14Output Cnn14Impl::forward(const torch::Tensor& wave) {
  torch::Tensor x = log_mel(wave.dim() == 1 ? wave.unsqueeze(0) : wave).unsqueeze(1);  // (B, 1, T, M)
  x = bn0->forward(x.transpose(1, 3)).transpose(1, 3);                                 // per mel bin
  x = conv_block1->forward(x, 2);
  x = conv_block2->forward(x, 2);
  x = conv_block3->forward(x, 2);
  x = conv_block4->forward(x, 2);
  x = conv_block5->forward(x, 2);
  x = conv_block6->forward(x, 1);
  x = x.mean(3);                          // (B, C, T')
  x = std::get<0>(x.max(2)) + x.mean(2);  // (B, C)
  Cnn14Output out;
  out.embedding = torch::relu(fc1->forward(x));
  out.logits = fc_audioset->forward(out.embedding);
  out.clipwise = torch::sigmoid(out.logits);
  return out;
}

Cnn14 load_cnn14(const std::string& path, const torch::Device& device) {
  if (!fs::exists(path))
    throw Error("PANNs CNN14 weights '" + path +
                "' do not exist: supply Cnn14_16k_mAP=0.438.pth (16 kHz) or Cnn14_mAP=0.431.pth (32 kHz) "
                "from zenodo.org/record/3987831 (the PANNs release); nothing is downloaded at run time");
  const io::WeightSet w = io::read_weights(path);
  io::TensorMap t;
  // Released files hold {"model": state_dict, "iteration": ...}; a bare state dict works too.
  for (const auto& [k, v] : w.tensors) t.emplace(k.rfind("model.", 0) == 0 ? k.substr(6) : k, v);
  const std::string what = "PANNs CNN14 weights '" + w.source + "'";
  auto weight = [&](const std::string& k, int64_t dim) {
    const auto it = t.find(k);
    if (it == t.end() || it->second.dim() != dim)
      throw Error(what + ": no " + std::to_string(dim) + "-d tensor '" + k +
                  "' (is this a released Cnn14 checkpoint?)");
    return it->second;
  };
  Cnn14FrontEnd fe = Cnn14FrontEnd::variant_32k();
  const std::string stft_key = "spectrogram_extractor.stft.conv_real.weight";
  if (t.count(stft_key)) {
    const int64_t n_fft = t.at(stft_key).size(-1);
    if (n_fft == 512)
      fe = Cnn14FrontEnd::variant_16k();
    else if (n_fft != 1024)
      throw Error(what + ": a " + std::to_string(n_fft) +
                  "-point STFT is neither the 16 kHz (512) nor the 32 kHz (1024) CNN14");
  } else if (t.count("logmel_extractor.melW") && t.at("logmel_extractor.melW").size(0) == 257) {
    fe = Cnn14FrontEnd::variant_16k();
  }
  std::vector<int64_t> channels;
  for (int i = 1; i <= 6; ++i)
    channels.push_back(weight("conv_block" + std::to_string(i) + ".conv1.weight", 4).size(0));
  const int64_t fc = weight("fc1.weight", 2).size(0);
  const int64_t classes = weight("fc_audioset.weight", 2).size(0);
  Cnn14 model(fe, channels, fc, classes);
  // The file's front end must be the one recomputed (torchlibrosa's kernels and librosa's
  // filterbank differ from ours by rounding only).
  for (const auto& [key, ours] : {std::pair<std::string, torch::Tensor>{stft_key, model->conv_real},
                                  {"spectrogram_extractor.stft.conv_imag.weight", model->conv_imag},
                                  {"logmel_extractor.melW", model->mel_w}}) {
    const auto it = t.find(key);
    if (it == t.end()) continue;  // recomputed either way
    const torch::Tensor theirs = it->second.to(torch::kCPU, torch::kFloat64), mine = ours.to(torch::kFloat64);
    if (theirs.sizes() != mine.sizes() ||
        (theirs - mine).abs().max().item<double>() > 1e-5 * mine.abs().max().item<double>())
      throw Error(what + ": " + key + " " + c10::str(theirs.sizes()) + " is not the " +
                  std::to_string(fe.sample_rate / 1000) + " kHz CNN14's front end (" +
                  std::to_string(fe.window) + "-point STFT, " + std::to_string(fe.mel_bins) +
                  " Slaney mels " + std::to_string(static_cast<int>(fe.fmin)) + "-" +
                  std::to_string(static_cast<int>(fe.fmax)) + " Hz)");
    t.erase(it);  // checked, not loaded
  }
  io::load_weights(*model, t, w.source);
  model->to(device);
  freeze(*model);
  return model;
}

}  // namespace losatok::models
