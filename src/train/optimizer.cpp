// AdamW and gradient clipping.
#include "losatok/train/optimizer.h"

#include <torch/torch.h>

#include <cmath>

#include "losatok/core/error.h"

namespace losatok::train {

AdamW::AdamW(std::string name, NamedTensors parameters, const OptimConfig& config)
    : name_(std::move(name)), params_(std::move(parameters)), config_(config) {
  config_.validate();
  for (const auto& [n, p] : params_) {
    decay_.push_back(p.dim() >= 2);
    exp_avg_.push_back(torch::zeros_like(p, torch::MemoryFormat::Preserve));
    exp_avg_sq_.push_back(torch::zeros_like(p, torch::MemoryFormat::Preserve));
  }
}

void AdamW::zero_grad() {
  for (auto& [n, p] : params_)
    if (p.grad().defined()) p.mutable_grad() = torch::Tensor();
}

void AdamW::step(double lr) {
  torch::NoGradGuard no_grad;
  ++steps_;
  const double b1 = config_.betas[0], b2 = config_.betas[1];
  const double bc1 = 1 - std::pow(b1, static_cast<double>(steps_));
  const double bc2_sqrt = std::sqrt(1 - std::pow(b2, static_cast<double>(steps_)));
  const double step_size = lr / bc1;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    torch::Tensor& p = params_[i].second;
    const torch::Tensor& g = p.grad();
    if (!g.defined()) continue;
    if (decay_[i] && config_.weight_decay > 0) p.mul_(1 - lr * config_.weight_decay);
    exp_avg_[i].lerp_(g, 1 - b1);
    exp_avg_sq_[i].mul_(b2).addcmul_(g, g, 1 - b2);
    const torch::Tensor denom = (exp_avg_sq_[i].sqrt() / bc2_sqrt).add_(config_.eps);
    p.addcdiv_(exp_avg_[i], denom, -step_size);
  }
}

std::map<std::string, torch::Tensor> AdamW::state() const {
  std::map<std::string, torch::Tensor> out;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    out[params_[i].first + ".exp_avg"] = exp_avg_[i];
    out[params_[i].first + ".exp_avg_sq"] = exp_avg_sq_[i];
  }
  out["step"] = torch::tensor({steps_}, torch::kInt64);
  return out;
}

void AdamW::load_state(const std::map<std::string, torch::Tensor>& state, const std::string& where) {
  const auto get = [&](const std::string& key, const torch::Tensor& like) {
    const auto it = state.find(key);
    if (it == state.end()) throw Error(where + ": optimizer '" + name_ + "' state '" + key + "' is missing");
    if (it->second.sizes() != like.sizes())
      throw Error(where + ": optimizer '" + name_ + "' state '" + key + "' has shape " +
                  c10::str(it->second.sizes()) + ", the parameter " + c10::str(like.sizes()));
    return it->second;
  };
  const auto step_it = state.find("step");
  if (step_it == state.end() || step_it->second.numel() != 1)
    throw Error(where + ": optimizer '" + name_ + "' state 'step' is missing");
  std::vector<torch::Tensor> m, v;  // all checked before anything changes
  for (std::size_t i = 0; i < params_.size(); ++i) {
    m.push_back(get(params_[i].first + ".exp_avg", exp_avg_[i]));
    v.push_back(get(params_[i].first + ".exp_avg_sq", exp_avg_sq_[i]));
  }
  torch::NoGradGuard no_grad;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    exp_avg_[i].copy_(m[i]);
    exp_avg_sq_[i].copy_(v[i]);
  }
  steps_ = step_it->second.item<int64_t>();
}

torch::Tensor clip_grad_norm(const NamedTensors& parameters, double max_norm) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> norms;
  for (const auto& [n, p] : parameters)
    if (p.grad().defined()) norms.push_back(p.grad().norm(2).to(torch::kFloat32));
  if (norms.empty()) return torch::zeros({});
  const torch::Tensor total = torch::stack(norms).norm(2);
  if (max_norm > 0) {
    const torch::Tensor coef = (max_norm / (total + 1e-6)).clamp_max(1.0);
    for (const auto& [n, p] : parameters)
      if (p.grad().defined()) p.grad().mul_(coef.to(p.grad().device()));
  }
  return total;
}

}  // namespace losatok::train
