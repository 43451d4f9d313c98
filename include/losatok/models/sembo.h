// SemBo, the semantic bottleneck (SPEC section 1.2), and the semantic side of the tokenizer:
// frozen encoder + SemBo under the checkpoint names `semantic_encoder.{encoder,bottleneck}`.
#pragma once

#include <torch/nn/modules/container/sequential.h>

#include "losatok/models/dasheng.h"

namespace losatok::models {

// compressor `downsample` D -> hidden -> latent and restorer `upsample` latent -> hidden -> D,
// each Linear, GELU, Linear.
struct SemanticBottleneckImpl : torch::nn::Module {
  SemanticBottleneckImpl(int dim, const SemBoConfig& c);
  torch::Tensor compress(const torch::Tensor& x) {
    return downsample->forward(x);
  }                                                                               // (.., D) -> (.., latent)
  torch::Tensor restore(const torch::Tensor& x) { return upsample->forward(x); }  // (.., latent) -> (.., D)
  torch::nn::Sequential downsample{nullptr}, upsample{nullptr};
};
TORCH_MODULE(SemanticBottleneck);

struct SemanticEncoderImpl : torch::nn::Module {
  SemanticEncoderImpl(const ModelConfig& c, const MelConfig& dasheng_mel);
  DashengEncoder encoder{nullptr};
  SemanticBottleneck bottleneck{nullptr};
};
TORCH_MODULE(SemanticEncoder);

}  // namespace losatok::models
