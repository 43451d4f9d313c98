// Weight initialisation shared by the model modules.
#pragma once

#include <torch/nn/module.h>

namespace losatok::models {

// In place: N(0, std) truncated to [lo, hi] by inverse-CDF sampling (timm's trunc_normal_).
void trunc_normal_(torch::Tensor& t, double std = 0.02, double lo = -2.0, double hi = 2.0);

// Every Linear / Conv (1d, 2d, transposed 1d) weight below `module`: trunc-normal(std) with zero
// bias; every LayerNorm: ones / zeros. The Dasheng and Vocos recipes.
void init_trunc_normal(torch::nn::Module& module, double std = 0.02);

// While one is alive (on this thread), init_trunc_normal does nothing: for models whose
// weights are about to be loaded from a checkpoint, where the recipe's initialisation of
// 800 M parameters would be wasted seconds.
class SkipInit {
 public:
  SkipInit();
  ~SkipInit();
  SkipInit(const SkipInit&) = delete;
  SkipInit& operator=(const SkipInit&) = delete;
  static bool active();

 private:
  bool previous_;
};

// Number of elements over `module`'s parameters.
int64_t count_parameters(const torch::nn::Module& module);

}  // namespace losatok::models
