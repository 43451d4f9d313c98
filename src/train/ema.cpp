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

void Ema::update(int64_t step) {
  if (!enabled()) return;
  torch::NoGradGuard no_grad;
  for (const auto& [n, p] : params_) {
    torch::Tensor& s = shadow_.at(n);
    if (step < config_.start_step)
      s.copy_(p);
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
