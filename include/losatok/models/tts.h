// UniFlow-style text-to-speech conditioning (docs/method.md, "Conditioning"): a FastSpeech 2
// phoneme encoder with a speaker vector, per-phoneme and global duration predictors, a prior
// for the monotonic alignment search that gives training durations without an external aligner
// (Glow-TTS / Grad-TTS), and length regulation of the encodings to the latent frames.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include <vector>

#include "losatok/models/dit.h"
#include "losatok/models/dit_config.h"

namespace losatok::models {

// Durations (P) of the most likely monotonic alignment of P phonemes to T frames (each phoneme
// takes >= 1 consecutive frames, all frames are used, in order) under log_lik (P, T): Glow-TTS's
// dynamic programme. Needs 1 <= P <= T (an error otherwise).
std::vector<int64_t> monotonic_alignment(const torch::Tensor& log_lik);

// x (B, P, C) repeated per durations (B, P) int64 into (B, frames, C); frames beyond a row's
// total are zero, a total beyond `frames` is cut.
torch::Tensor length_regulate(const torch::Tensor& x, const torch::Tensor& durations, int64_t frames);

// Integer durations (>= 1 each) for generation from predicted log(1 + frames) per phoneme
// (P): rounded, then, when total > 0, shared out to sum to `total` (largest remainders).
std::vector<int64_t> durations_from_log(const torch::Tensor& log_durations, int64_t total);

// A FastSpeech 2 feed-forward transformer block: post-norm self-attention and a convolutional
// FFN (Conv1d k -> ReLU -> Conv1d 1).
struct FftBlockImpl : torch::nn::Module {
  explicit FftBlockImpl(const PhonemeEncoderConfig& c);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask);
  Attention attn{nullptr};
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr};
  torch::nn::Conv1d conv1{nullptr}, conv2{nullptr};
};
TORCH_MODULE(FftBlock);

// FastSpeech 2's variance predictor: (Conv1d k -> ReLU -> LayerNorm) x 2 -> Linear(1).
struct DurationPredictorImpl : torch::nn::Module {
  DurationPredictorImpl(int width, int kernel);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask);  // (B, P)
  torch::nn::Conv1d conv1{nullptr}, conv2{nullptr};
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr};
  torch::nn::Linear out{nullptr};
};
TORCH_MODULE(DurationPredictor);

// The whole phoneme path, checkpoint prefix `tts.`.
struct UniFlowTtsImpl : torch::nn::Module {
  // out_dim: the width of the DiT's content sequence; latent_dim: the prior's.
  UniFlowTtsImpl(const TtsConfig& c, int out_dim, int latent_dim);
  struct Output {
    torch::Tensor hidden;         // (B, P, width): encoder output + speaker
    torch::Tensor content;        // (B, P, out_dim): the DiT's content (zero on padding)
    torch::Tensor log_durations;  // (B, P): predicted log(1 + frames)
    torch::Tensor log_seconds;    // (B): predicted log(1 + seconds), from the mean encoding and the count
  };
  // units (B, P, K) symbol ids (data::PhonemeUnit, 0-padded), mask (B, P) bool; speaker: ids
  // (B) int64 for a table, vectors (B, dim) for a cache, undefined for none.
  Output forward(const torch::Tensor& units, const torch::Tensor& mask, const torch::Tensor& speaker);
  // The alignment prior (B, P, latent_dim) of encodings.
  torch::Tensor prior(const torch::Tensor& hidden) { return prior_proj->forward(hidden); }

  TtsConfig config;
  torch::nn::Embedding embed{nullptr}, speaker_table{nullptr};
  torch::nn::Linear speaker_proj{nullptr}, out_proj{nullptr}, prior_proj{nullptr};
  torch::nn::ModuleList blocks{nullptr};
  DurationPredictor local_duration{nullptr};
  torch::nn::Linear global_duration1{nullptr}, global_duration2{nullptr};
};
TORCH_MODULE(UniFlowTts);

}  // namespace losatok::models
