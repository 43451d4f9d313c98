// Dynamic loss scaling.
#include "losatok/train/loss_scaler.h"

#include <torch/torch.h>

#include "losatok/core/error.h"

namespace losatok::train {

LossScaler::LossScaler(const LossScaleConfig& config, const torch::Device& device) : config_(config) {
  config_.validate();
  scale_ = torch::full({}, config_.init, torch::dtype(torch::kFloat32).device(device));
  growth_tracker_ = torch::zeros({}, torch::dtype(torch::kInt32).device(device));
}

void LossScaler::unscale(const NamedTensors& parameters) const {
  torch::NoGradGuard no_grad;
  const torch::Tensor inv = scale_.reciprocal();
  for (const auto& [n, p] : parameters)
    if (p.grad().defined()) p.grad().mul_(inv.to(p.grad().scalar_type()));
}

void LossScaler::update(const torch::Tensor& found_inf) {
  torch::NoGradGuard no_grad;
  const torch::Tensor inf = found_inf.to(scale_.device()).to(torch::kBool);
  const torch::Tensor grown = growth_tracker_ + 1;
  const torch::Tensor grow = grown >= config_.growth_interval;
  // Growing never makes the scale infinite (GradScaler keeps it then).
  const torch::Tensor grown_scale = scale_ * config_.growth_factor;
  scale_ = torch::where(inf, scale_ * config_.backoff_factor,
                        torch::where(grow & torch::isfinite(grown_scale), grown_scale, scale_));
  growth_tracker_ = torch::where(inf | grow, torch::zeros_like(grown), grown);
}

std::map<std::string, torch::Tensor> LossScaler::state() const {
  return {{"scale", scale_.cpu()}, {"growth_tracker", growth_tracker_.cpu()}};
}

void LossScaler::load_state(const std::map<std::string, torch::Tensor>& state, const std::string& where) {
  for (const char* key : {"scale", "growth_tracker"})
    if (!state.count(key) || state.at(key).numel() != 1)
      throw Error(where + ": loss scaler state '" + std::string(key) + "' is missing");
  scale_ = state.at("scale").reshape({}).to(scale_.options());
  growth_tracker_ = state.at("growth_tracker").reshape({}).to(growth_tracker_.options());
}

}  // namespace losatok::train
