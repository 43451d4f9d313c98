// VGGish from its published architecture and the TensorFlow release's front end (vggish_input.py,
// mel_features.py): numpy float64 framing, periodic Hann, |rfft|, an HTK-mel matrix built in the
// mel domain, log(mel + 0.01).
#include "losatok/models/vggish.h"

#include <torch/torch.h>

#include <cmath>
#include <filesystem>

#include "losatok/core/error.h"
#include "losatok/io/weights.h"
#include "losatok/models/layers.h"

namespace fs = std::filesystem;

namespace losatok::models {

namespace {

double hz_to_htk_mel(double hz) {
  return 1127.0 * std::log1p(hz / 700.0);
}

}  // namespace

torch::Tensor vggish_mel_matrix(int n_fft, int n_mels, int sample_rate, double lower_hz, double upper_hz) {
  const int64_t bins = n_fft / 2 + 1;
  const double nyquist = sample_rate / 2.0;
  if (!(lower_hz >= 0 && lower_hz < upper_hz && upper_hz <= nyquist))
    throw Error("vggish mel matrix: need 0 <= lower " + std::to_string(lower_hz) + " < upper " +
                std::to_string(upper_hz) + " <= Nyquist " + std::to_string(nyquist));
  auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  const torch::Tensor bins_mel = 1127.0 * torch::log1p(torch::linspace(0.0, nyquist, bins, f64) / 700.0);
  const torch::Tensor edges =
      torch::linspace(hz_to_htk_mel(lower_hz), hz_to_htk_mel(upper_hz), n_mels + 2, f64);
  torch::Tensor m = torch::empty({bins, n_mels}, f64);
  for (int i = 0; i < n_mels; ++i) {
    const double lo = edges[i].item<double>(), mid = edges[i + 1].item<double>(),
                 hi = edges[i + 2].item<double>();
    const torch::Tensor lower = (bins_mel - lo) / (mid - lo), upper = (hi - bins_mel) / (hi - mid);
    m.select(1, i).copy_(torch::minimum(lower, upper).clamp_min(0.0));
  }
  m[0].zero_();  // the DC bin contributes to no band (HTK)
  return m;
}

torch::Tensor vggish_examples(const torch::Tensor& wave_in) {
  using F = VggishFrontEnd;
  if (wave_in.dim() != 1) throw Error("vggish: expected one mono clip (N), got " + c10::str(wave_in.sizes()));
  const torch::Tensor wave = wave_in.to(torch::kCPU, torch::kFloat64);
  const int64_t n = wave.size(0);
  if (n < F::kWindow) return torch::zeros({0, F::kExampleFrames, F::kMels});
  const int64_t frames = 1 + (n - F::kWindow) / F::kHop;
  auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  // Periodic Hann as mel_features.periodic_hann: 0.5 - 0.5 cos(2 pi k / N), k < N.
  const torch::Tensor window =
      0.5 - 0.5 * torch::cos(2.0 * M_PI / F::kWindow * torch::arange(F::kWindow, f64));
  const torch::Tensor framed = wave.as_strided({frames, F::kWindow}, {F::kHop, 1}) * window;
  const torch::Tensor magnitude = torch::fft_rfft(framed, F::kFft, -1).abs();  // (T, 257)
  static const torch::Tensor mel = vggish_mel_matrix();
  const torch::Tensor log_mel = torch::log(magnitude.mm(mel) + F::kLogOffset);  // (T, 64)
  if (frames < F::kExampleFrames) return torch::zeros({0, F::kExampleFrames, F::kMels});
  const int64_t examples = 1 + (frames - F::kExampleFrames) / F::kExampleHop;
  return log_mel.contiguous()
      .as_strided({examples, F::kExampleFrames, F::kMels}, {F::kExampleHop * F::kMels, F::kMels, 1})
      .to(torch::kFloat32)
      .contiguous();
}

VggishImpl::VggishImpl(const std::vector<int64_t>& c, int64_t fc, int64_t embedding_dim_)
    : embedding_dim(embedding_dim_) {
  if (c.size() != 6) throw Error("vggish: expected 6 conv widths, got " + std::to_string(c.size()));
  namespace nn = torch::nn;
  auto conv = [](int64_t in, int64_t out) { return nn::Conv2d(nn::Conv2dOptions(in, out, 3).padding(1)); };
  auto pool = [] { return nn::MaxPool2d(nn::MaxPool2dOptions(2).stride(2)); };
  // Indices 0, 3, 6, 8, 11, 13 are the convs, as torchvggish's make_layers numbers them.
  features = register_module(
      "features", nn::Sequential(conv(1, c[0]), nn::ReLU(), pool(), conv(c[0], c[1]), nn::ReLU(), pool(),
                                 conv(c[1], c[2]), nn::ReLU(), conv(c[2], c[3]), nn::ReLU(), pool(),
                                 conv(c[3], c[4]), nn::ReLU(), conv(c[4], c[5]), nn::ReLU(), pool()));
  // 96 x 64 after four 2x2 pools: 6 x 4.
  embeddings = register_module(
      "embeddings", nn::Sequential(nn::Linear(c[5] * 6 * 4, fc), nn::ReLU(), nn::Linear(fc, fc), nn::ReLU(),
                                   nn::Linear(fc, embedding_dim), nn::ReLU()));
}

torch::Tensor VggishImpl::forward(const torch::Tensor& examples, bool final_relu) {
  torch::Tensor x = features->forward(examples.unsqueeze(1));  // (E, C, 6, 4)
  // TensorFlow flattens NHWC: channels last.
  x = x.permute({0, 2, 3, 1}).reshape({x.size(0), -1});
  auto linear = [&](std::size_t i) { return embeddings[i]->as<torch::nn::Linear>(); };
  x = torch::relu(linear(0)->forward(x));
  x = torch::relu(linear(2)->forward(x));
  x = linear(4)->forward(x);
  return final_relu ? torch::relu(x) : x;
}

Vggish load_vggish(const std::string& path, const torch::Device& device) {
  if (!fs::exists(path))
    throw Error("VGGish weights '" + path +
                "' do not exist: supply torchvggish's vggish-10086976.pth (the release assets of "
                "github.com/harritaylor/torchvggish); nothing is downloaded at run time");
  io::WeightSet w = io::read_weights(path);
  io::TensorMap t;
  for (auto& [k, v] : w.tensors)
    if (k.rfind("pca_", 0) != 0) t.emplace(k, v);  // the PCA post-processing is not used
  auto weight = [&](const std::string& k, int64_t dim) {
    const auto it = t.find(k);
    if (it == t.end() || it->second.dim() != dim)
      throw Error("VGGish weights '" + w.source + "': no " + std::to_string(dim) + "-d tensor '" + k +
                  "' (is this torchvggish's vggish-10086976.pth?)");
    return it->second;
  };
  std::vector<int64_t> channels;
  for (const int i : {0, 3, 6, 8, 11, 13})
    channels.push_back(weight("features." + std::to_string(i) + ".weight", 4).size(0));
  const int64_t fc = weight("embeddings.0.weight", 2).size(0);
  const int64_t dim = weight("embeddings.4.weight", 2).size(0);
  Vggish model(channels, fc, dim);
  io::load_weights(*model, t, w.source);
  model->to(device);
  freeze(*model);
  return model;
}

}  // namespace losatok::models
