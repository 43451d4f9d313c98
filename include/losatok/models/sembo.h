// SemBo, the semantic bottleneck (docs/method.md, "SemBo"), and the semantic side of the tokenizer:
// frozen encoder + SemBo under the checkpoint names `semantic_encoder.{encoder,bottleneck}`.
#pragma once

#include <torch/nn/modules/container/sequential.h>

#include <map>
#include <string>
#include <utility>

#include "losatok/models/dasheng.h"

namespace losatok::models {

// The compressor (D -> latent) and restorer (latent -> D), by `SemBoConfig::method`:
//  - mlp: `downsample` and `upsample`, each Linear, GELU, Linear;
//  - pca: buffers `pca_mean` (D) and `pca_components` (latent, D, orthonormal rows), fitted
//    with PcaFit; compress = (x - mean) C^T, restore = y C + mean;
//  - channel_merge: no weights; compress = mean over groups of D / latent adjacent channels,
//    restore = each group's mean repeated.
struct SemanticBottleneckImpl : torch::nn::Module {
  SemanticBottleneckImpl(int dim, const SemBoConfig& c);
  torch::Tensor compress(const torch::Tensor& x);  // (.., D) -> (.., latent)
  torch::Tensor restore(const torch::Tensor& y);   // (.., latent) -> (.., D)
  const SemBoConfig& config() const { return config_; }

  torch::nn::Sequential downsample{nullptr}, upsample{nullptr};  // mlp
  torch::Tensor pca_mean, pca_components;                        // pca

 private:
  SemBoConfig config_;
  int dim_;
};
TORCH_MODULE(SemanticBottleneck);

// Streamed PCA: feature sums and outer-product sums in float64, so a fit over many hours of
// features needs memory for one D x D matrix only.
class PcaFit {
 public:
  explicit PcaFit(int dim);
  void add(const torch::Tensor& x);  // (N, D) rows
  int64_t count() const { return count_; }
  // mean (D) and the top-`k` principal directions (k, D) as float32, sign fixed so each
  // direction's largest-magnitude entry is positive (the fit is then reproducible).
  std::pair<torch::Tensor, torch::Tensor> solve(int k) const;
  // Explained-variance ratio of each direction, descending (D).
  torch::Tensor explained_variance_ratio() const;
  // State for checkpoints: count (1), sum (D), outer (D, D), all float64.
  std::map<std::string, torch::Tensor> state() const;
  void load_state(const std::map<std::string, torch::Tensor>& s, const std::string& where);

 private:
  torch::Tensor covariance() const;
  int dim_;
  int64_t count_ = 0;
  torch::Tensor sum_, outer_;
};

struct SemanticEncoderImpl : torch::nn::Module {
  SemanticEncoderImpl(const ModelConfig& c, const MelConfig& dasheng_mel);
  DashengEncoder encoder{nullptr};
  SemanticBottleneck bottleneck{nullptr};
};
TORCH_MODULE(SemanticEncoder);

}  // namespace losatok::models
