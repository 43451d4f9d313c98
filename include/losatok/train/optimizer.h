// AdamW over named parameters (PyTorch's algorithm: fused, multi-tensor or per-tensor, see
// OptimConfig::implementation), with its state keyed
// by parameter name so a checkpoint is readable, survives reordering, and means the same on
// every LibTorch version.
#pragma once

#include <torch/types.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "losatok/train/train_config.h"

namespace losatok::train {

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

class AdamW {
 public:
  // Parameters of 2+ dimensions get `weight_decay`; the others (biases, norms, scales) none.
  AdamW(std::string name, NamedTensors parameters, const OptimConfig& config);

  const std::string& name() const { return name_; }
  const NamedTensors& parameters() const { return params_; }
  const OptimConfig& config() const { return config_; }
  int64_t steps_taken() const;  // reads the device's step count back

  void zero_grad();
  // One update at learning rate `lr` for every parameter that has a gradient, when `apply` (a
  // 0-d bool tensor; undefined = true) holds. A false `apply` leaves weights, moments and the
  // step count untouched, decided on the device.
  void step(double lr, const torch::Tensor& apply = {});

  // "<param>.exp_avg", "<param>.exp_avg_sq" per parameter, "step" (int64 scalar).
  std::map<std::string, torch::Tensor> state() const;
  // Errors name `where` and the parameter when a tensor is missing or has another shape.
  void load_state(const std::map<std::string, torch::Tensor>& state, const std::string& where);

 private:
  enum class Impl { kFused, kForeach, kPerTensor };
  struct Group {  // parameters with a gradient, of one dtype and one weight decay
    bool decay = false;
    std::vector<torch::Tensor> params, grads, exp_avg, exp_avg_sq;
  };
  std::vector<Group> groups() const;
  void step_fused(double lr, const torch::Tensor& ok);
  void step_foreach(double lr, const torch::Tensor& ok);
  void step_per_tensor(double lr, const torch::Tensor& ok);

  std::string name_;
  Impl impl_ = Impl::kForeach;
  NamedTensors params_;
  std::vector<bool> decay_;
  OptimConfig config_;
  std::vector<torch::Tensor> exp_avg_, exp_avg_sq_;
  torch::Tensor step_count_;  // float64 scalar on the parameters' device
  torch::Tensor fused_step_;  // float32 copy for the fused kernel
  int64_t host_steps_ = 0;    // the foreach path's host copy (it reads every step's outcome)
};

// The global L2 norm of the parameters' gradients, and (max_norm > 0) every gradient scaled by
// max_norm / (norm + 1e-6) when the norm is above max_norm (torch.nn.utils.clip_grad_norm_).
torch::Tensor clip_grad_norm(const NamedTensors& parameters, double max_norm);

}  // namespace losatok::train
