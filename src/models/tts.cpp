// UniFlow-style TTS conditioning: phoneme encoder, speaker, durations, alignment.
#include "losatok/models/tts.h"

#include <torch/torch.h>

#include <cmath>
#include <limits>
#include <numeric>

#include "losatok/core/error.h"
#include "losatok/data/text.h"
#include "losatok/models/layers.h"

namespace losatok::models {

std::vector<int64_t> monotonic_alignment(const torch::Tensor& log_lik_in) {
  if (log_lik_in.dim() != 2) throw Error("monotonic alignment: expected (phonemes, frames) scores");
  const int64_t p = log_lik_in.size(0), t = log_lik_in.size(1);
  if (p < 1 || p > t)
    throw Error("monotonic alignment: " + std::to_string(p) + " phonemes cannot align to " +
                std::to_string(t) + " frames (each phoneme takes at least one)");
  const torch::Tensor ll = log_lik_in.detach().to(torch::kCPU, torch::kDouble).contiguous();
  const auto a = ll.accessor<double, 2>();
  constexpr double kNeg = -std::numeric_limits<double>::infinity();
  // q[i][j]: best score of frames 0..j with frame j on phoneme i; from[i][j]: whether frame j-1
  // was on phoneme i-1 (a step) rather than on i (a stay).
  std::vector<double> q(static_cast<std::size_t>(p * t), kNeg);
  std::vector<char> step(static_cast<std::size_t>(p * t), 0);
  const auto at = [t](int64_t i, int64_t j) { return static_cast<std::size_t>(i * t + j); };
  q[at(0, 0)] = a[0][0];
  for (int64_t j = 1; j < t; ++j)
    for (int64_t i = std::max<int64_t>(0, p - (t - j)); i <= std::min(j, p - 1); ++i) {
      const double stay = q[at(i, j - 1)];
      const double move = i > 0 ? q[at(i - 1, j - 1)] : kNeg;
      step[at(i, j)] = move > stay;
      q[at(i, j)] = std::max(stay, move) + a[i][j];
    }
  std::vector<int64_t> durations(static_cast<std::size_t>(p), 0);
  for (int64_t j = t - 1, i = p - 1; j >= 0; --j) {
    ++durations[static_cast<std::size_t>(i)];
    if (j > 0 && step[at(i, j)]) --i;
  }
  return durations;
}

torch::Tensor length_regulate(const torch::Tensor& x, const torch::Tensor& durations, int64_t frames) {
  const int64_t b = x.size(0), p = x.size(1);
  const torch::Tensor d = durations.to(torch::kCPU, torch::kLong).contiguous();
  // For each frame, the phoneme it belongs to (index p = a zero row past the end).
  torch::Tensor index = torch::full({b, frames}, p, torch::kLong);
  auto da = d.accessor<int64_t, 2>();
  auto ia = index.accessor<int64_t, 2>();
  for (int64_t i = 0; i < b; ++i) {
    int64_t f = 0;
    for (int64_t k = 0; k < p && f < frames; ++k)
      for (int64_t r = 0; r < da[i][k] && f < frames; ++r) ia[i][f++] = k;
  }
  const torch::Tensor padded = torch::cat({x, torch::zeros({b, 1, x.size(2)}, x.options())}, 1);
  const torch::Tensor idx = index.to(x.device()).unsqueeze(-1).expand({b, frames, x.size(2)});
  return padded.gather(1, idx);
}

std::vector<int64_t> durations_from_log(const torch::Tensor& log_durations, int64_t total) {
  const torch::Tensor frames =
      (log_durations.detach().to(torch::kCPU, torch::kDouble).exp() - 1.0).clamp_min(0.0);
  const auto f = frames.accessor<double, 1>();
  const int64_t p = frames.size(0);
  std::vector<int64_t> out(static_cast<std::size_t>(p));
  if (total <= 0) {
    for (int64_t i = 0; i < p; ++i) out[i] = std::max<int64_t>(1, std::llround(f[i]));
    return out;
  }
  if (total < p)
    throw Error("tts: " + std::to_string(total) + " frames are too few for " + std::to_string(p) +
                " phonemes");
  // Each phoneme keeps one frame; the rest is shared in proportion to the predictions.
  double sum = 0;
  for (int64_t i = 0; i < p; ++i) sum += f[i];
  const int64_t spare = total - p;
  std::vector<double> want(static_cast<std::size_t>(p));
  int64_t given = 0;
  for (int64_t i = 0; i < p; ++i) {
    want[i] = sum > 0 ? spare * f[i] / sum : static_cast<double>(spare) / p;
    out[i] = 1 + static_cast<int64_t>(std::floor(want[i]));
    given += out[i] - 1;
  }
  std::vector<int64_t> order(static_cast<std::size_t>(p));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t x, int64_t y) {
    return want[x] - std::floor(want[x]) > want[y] - std::floor(want[y]);
  });
  for (int64_t k = 0; given < spare; ++k, ++given) ++out[order[k % p]];
  return out;
}

FftBlockImpl::FftBlockImpl(const PhonemeEncoderConfig& c) {
  const int hidden = static_cast<int>(c.width * c.mlp_ratio);
  attn = register_module("attn", Attention(c.width, c.heads, 0, /*qk_norm=*/false, /*rope_theta=*/10000.0));
  norm1 = register_module("norm1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.width})));
  conv1 = register_module(
      "conv1",
      torch::nn::Conv1d(torch::nn::Conv1dOptions(c.width, hidden, c.conv_kernel).padding(c.conv_kernel / 2)));
  conv2 = register_module("conv2", torch::nn::Conv1d(torch::nn::Conv1dOptions(hidden, c.width, 1)));
  norm2 = register_module("norm2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.width})));
}

torch::Tensor FftBlockImpl::forward(const torch::Tensor& x, const torch::Tensor& mask) {
  const torch::Tensor m = mask.unsqueeze(-1).to(x.scalar_type());
  torch::Tensor h = norm1->forward(x + attn->forward(x, {}, mask)) * m;
  const torch::Tensor f = conv2->forward(torch::relu(conv1->forward(h.transpose(1, 2)))).transpose(1, 2);
  return norm2->forward(h + f) * m;
}

DurationPredictorImpl::DurationPredictorImpl(int width, int kernel) {
  const auto conv = [&]() {
    return torch::nn::Conv1d(torch::nn::Conv1dOptions(width, width, kernel).padding(kernel / 2));
  };
  conv1 = register_module("conv1", conv());
  norm1 = register_module("norm1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({width})));
  conv2 = register_module("conv2", conv());
  norm2 = register_module("norm2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({width})));
  out = register_module("out", torch::nn::Linear(width, 1));
}

torch::Tensor DurationPredictorImpl::forward(const torch::Tensor& x, const torch::Tensor& mask) {
  const torch::Tensor m = mask.unsqueeze(-1).to(x.scalar_type());
  torch::Tensor h = norm1->forward(torch::relu(conv1->forward((x * m).transpose(1, 2)).transpose(1, 2)));
  h = norm2->forward(torch::relu(conv2->forward((h * m).transpose(1, 2)).transpose(1, 2)));
  return apply_linear(out, h).squeeze(-1) * m.squeeze(-1);
}

UniFlowTtsImpl::UniFlowTtsImpl(const TtsConfig& c, int out_dim, int latent_dim) : config(c) {
  const int w = c.encoder.width;
  embed = register_module(
      "embed", torch::nn::Embedding(
                   torch::nn::EmbeddingOptions(data::kPhonemeVocab, w).padding_idx(data::kPhonemePad)));
  if (c.speaker.source == "table")
    speaker_table =
        register_module("speaker_table", torch::nn::Embedding(c.speaker.max_speakers, c.speaker.dim));
  if (c.speaker.source != "none")
    speaker_proj = register_module("speaker_proj", torch::nn::Linear(c.speaker.dim, w));
  blocks = register_module("blocks", torch::nn::ModuleList());
  for (int i = 0; i < c.encoder.depth; ++i) blocks->push_back(FftBlock(c.encoder));
  out_proj = register_module("out_proj", torch::nn::Linear(w, out_dim));
  prior_proj = register_module("prior_proj", torch::nn::Linear(w, latent_dim));
  local_duration = register_module("local_duration", DurationPredictor(w, c.encoder.duration_kernel));
  // The global predictor sees the mean encoding and log(1 + phonemes): a mean alone hides the length.
  global_duration1 = register_module("global_duration1", torch::nn::Linear(w + 1, w));
  global_duration2 = register_module("global_duration2", torch::nn::Linear(w, 1));
}

UniFlowTtsImpl::Output UniFlowTtsImpl::forward(const torch::Tensor& units, const torch::Tensor& mask,
                                               const torch::Tensor& speaker) {
  const torch::Tensor m = mask.unsqueeze(-1).to(embed->weight.scalar_type());
  // A phoneme is the sum of its symbols' embeddings (padding symbols embed to zero).
  torch::Tensor h = embed->forward(units).sum(2) * m;
  for (const auto& b : *blocks) h = b->as<FftBlockImpl>()->forward(h, mask);
  if (speaker_proj) {
    if (!speaker.defined())
      throw Error("tts: this model needs a speaker (dit.tts.speaker.source " + config.speaker.source + ")");
    const torch::Tensor s = speaker_table ? speaker_table->forward(speaker) : speaker.to(h.scalar_type());
    h = (h + apply_linear(speaker_proj, s).unsqueeze(1)) * m;
  }
  Output o;
  o.hidden = h;
  o.content = apply_linear(out_proj, h) * m;
  o.log_durations = local_duration->forward(h, mask);
  const torch::Tensor count = m.sum(1);  // (B, 1)
  const torch::Tensor pooled = torch::cat({h.sum(1) / count.clamp_min(1.0), torch::log1p(count)}, 1);
  o.log_seconds =
      apply_linear(global_duration2, torch::relu(apply_linear(global_duration1, pooled))).squeeze(-1);
  return o;
}

}  // namespace losatok::models
