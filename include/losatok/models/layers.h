// Small helpers for applying the C++ frontend's modules with fewer operations.
#pragma once

#include <torch/nn/modules/linear.h>

namespace losatok::models {

// A Linear module as one ATen operation (aten::linear, bias fused into the GEMM where the
// backend can). The C++ frontend's Linear::forward on LibTorch 1.13 dispatches matmul + add_.
inline torch::Tensor apply_linear(const torch::nn::Linear& l, const torch::Tensor& x) {
  return torch::linear(x, l->weight, l->bias);
}

// A frozen teacher or instrument: evaluation mode, no gradients.
inline void freeze(torch::nn::Module& m) {
  m.eval();
  for (auto& p : m.parameters()) p.set_requires_grad(false);
}

}  // namespace losatok::models
