// SemBo's losses (docs/method.md, "SemBo") and the validation figures built from the same pieces.
// Every function takes a (B, T) bool mask of valid tokens: padding never counts.
#pragma once

#include <torch/types.h>

namespace losatok::losses {

// x / max(||x||_2, 1e-12) over the last dimension (torch.nn.functional.normalize).
torch::Tensor l2_normalize(const torch::Tensor& x);

// MSE(normalize(restored), normalize(target)) over valid tokens and all channels; `target` is
// detached. restored, target: (B, T, D).
torch::Tensor reconstruction_loss(const torch::Tensor& restored, const torch::Tensor& target,
                                  const torch::Tensor& mask);

// Per clip, the (T, T) cosine-similarity matrix S = normalize(x) normalize(x)^T.
torch::Tensor time_relation_matrix(const torch::Tensor& x);  // (B, T, D) -> (B, T, T)

// MSE(S_low, S_high) over the valid (i, j) token pairs of each clip; `high` is detached.
// low: (B, T, d), high: (B, T, D).
torch::Tensor time_relation_loss(const torch::Tensor& low, const torch::Tensor& high,
                                 const torch::Tensor& mask);

// Mean over valid tokens of 1 - cos(restored, target): the validation "reconstruction cosine
// error" (0 = perfect).
torch::Tensor cosine_error(const torch::Tensor& restored, const torch::Tensor& target,
                           const torch::Tensor& mask);

}  // namespace losatok::losses
