// EMA of weights.
#include "losatok/train/ema.h"

#include <torch/torch.h>

#include "losatok/core/error.h"

namespace losatok::train {

Ema::Ema(const NamedTensors& parameters, const EmaConfig& config) : params_(parameters), config_(config) {
  if (!enabled()) return;
  torch::NoGradGuard no_grad;
  for (const auto& [n, p] : params_) shadow_[n] = p.detach().clone();
}

void Ema::update(int64_t step, const torch::Tensor& apply) {
  if (!enabled() || params_.empty()) return;
  torch::NoGradGuard no_grad;
  // A skipped optimizer step leaves the weights as they were: the average does not move either.
  torch::Tensor weight;
  if (apply.defined() && step >= config_.start_step)
    weight = apply.to(params_.front().second.device(), torch::kFloat32).reshape({}) *
             static_cast<float>(1 - config_.decay);
  for (const auto& [n, p] : params_) {
    torch::Tensor& s = shadow_.at(n);
    if (step < config_.start_step)
      s.copy_(p);
    else if (weight.defined())
      s.lerp_(p, weight.to(s.scalar_type()));
    else
      s.lerp_(p, 1 - config_.decay);
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
