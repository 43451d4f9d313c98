// Exponential moving average of trained weights: shadow = decay * shadow + (1 - decay) * w.
#pragma once

#include <torch/types.h>

#include <map>
#include <string>
#include <vector>

#include "losatok/train/optimizer.h"

namespace losatok::train {

class Ema {
 public:
  // Shadows `parameters` (copies of their current values). decay 0 = off.
  Ema(const NamedTensors& parameters, const EmaConfig& config);
  bool enabled() const { return config_.decay > 0; }
  // After the optimizer step with index `step`: before start_step the shadow copies the
  // weights, afterwards it averages them; only where `apply` (0-d bool, undefined = true) holds.
  void update(int64_t step, const torch::Tensor& apply = {});
  // name -> averaged tensor.
  const std::map<std::string, torch::Tensor>& shadow() const { return shadow_; }
  void load(const std::map<std::string, torch::Tensor>& tensors, const std::string& where);

 private:
  NamedTensors params_;
  EmaConfig config_;
  std::map<std::string, torch::Tensor> shadow_;
  std::vector<torch::Tensor> param_list_, shadow_list_;  // aligned, for the multi-tensor ops
};

}  // namespace losatok::train
