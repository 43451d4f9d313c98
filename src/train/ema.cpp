// EMA of weights.
#include "losatok/train/ema.h"

#include <torch/torch.h>

#include "losatok/core/compat.h"
#include "losatok/core/error.h"

namespace losatok::train {

Ema::Ema(const NamedTensors& parameters, const EmaConfig& config) : params_(parameters), config_(config) {
  if (!enabled()) return;
  torch::NoGradGuard no_grad;
  for (const auto& [n, p] : params_) {
    shadow_[n] = p.detach().clone();
    param_list_.push_back(p);
    shadow_list_.push_back(shadow_[n]);
  }
}

void Ema::update(int64_t step, const torch::Tensor& apply) {
  if (!enabled() || params_.empty()) return;
  torch::NoGradGuard no_grad;
  // Multi-tensor ops over all weights at once.
  if (step < config_.start_step) {  // a copy
    at::_foreach_zero_(shadow_list_);
    at::_foreach_add_(shadow_list_, param_list_);
  } else if (apply.defined()) {
    // A skipped optimizer step leaves the weights as they were: the average does not move either
    // (weight 0, decided on the device).
    const torch::Tensor w = apply.to(params_.front().second.device(), torch::kFloat32).reshape({}) *
                            static_cast<float>(1 - config_.decay);
    compat::foreach_mul_(shadow_list_, 1 - w);
    at::_foreach_add_(shadow_list_, compat::foreach_mul(param_list_, w));
  } else {
    at::_foreach_mul_(shadow_list_, config_.decay);
    at::_foreach_add_(shadow_list_, param_list_, 1 - config_.decay);
  }
}

void Ema::load(const std::map<std::string, torch::Tensor>& tensors, const std::string& where) {
  if (!enabled()) return;
  for (const auto& [n, s] : shadow_) {
    const auto it = tensors.find(n);
    if (it == tensors.end()) throw Error(where + ": EMA weight '" + n + "' is missing");
    if (it->second.sizes() != s.sizes())
      throw Error(where + ": EMA weight '" + n + "' has shape " + c10::str(it->second.sizes()) +
                  ", expected " + c10::str(s.sizes()));
  }
  torch::NoGradGuard no_grad;
  for (auto& [n, s] : shadow_) s.copy_(tensors.at(n));
}

}  // namespace losatok::train
