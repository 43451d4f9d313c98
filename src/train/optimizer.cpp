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

void AdamW::step(double lr, const torch::Tensor& apply) {
  torch::NoGradGuard no_grad;
  if (params_.empty()) return;
  const torch::Device device = params_.front().second.device();
  if (!step_count_.defined()) step_count_ = torch::zeros({}, torch::dtype(torch::kFloat64).device(device));
  // Whether this update happens, as a device tensor: a skipped step (non-finite gradients)
  // changes nothing, and the host never waits to find out.
  const torch::Tensor ok = apply.defined() ? apply.to(device, torch::kBool).reshape({})
                                           : torch::ones({}, torch::dtype(torch::kBool).device(device));
  const torch::Tensor okf = ok.to(torch::kFloat64);
  step_count_.add_(okf);
  const double b1 = config_.betas[0], b2 = config_.betas[1];
  // Bias corrections of step t (1 before the first update, so a skipped first step divides by 1).
  const torch::Tensor t = step_count_.clamp_min(1);
  const torch::Tensor bc1 = 1 - torch::pow(b1, t);
  const torch::Tensor bc2_sqrt = (1 - torch::pow(b2, t)).sqrt();
  const auto f32 = [&](const torch::Tensor& x) { return x.to(torch::kFloat32); };
  const torch::Tensor decay_factor = f32(1 - okf * (lr * config_.weight_decay));
  const torch::Tensor avg_weight = f32(okf * (1 - b1));
  const torch::Tensor sq_decay =
      f32(torch::where(ok, torch::full({}, b2, okf.options()), torch::ones_like(okf)));
  const torch::Tensor step_size = f32(okf * lr / bc1);
  const torch::Tensor bc2 = f32(bc2_sqrt);
  const torch::Tensor skip = ok.logical_not();
  for (std::size_t i = 0; i < params_.size(); ++i) {
    torch::Tensor& p = params_[i].second;
    torch::Tensor g = p.grad();
    if (!g.defined()) continue;
    g.masked_fill_(skip, 0.0);  // a non-finite gradient must not reach the moments
    if (decay_[i] && config_.weight_decay > 0) p.mul_(decay_factor);
    exp_avg_[i].lerp_(g, exp_avg_[i].scalar_type() == torch::kFloat32
                             ? avg_weight
                             : avg_weight.to(exp_avg_[i].scalar_type()));
    exp_avg_sq_[i].mul_(sq_decay).addcmul_(g, g, 1 - b2);
    const torch::Tensor denom = (exp_avg_sq_[i].sqrt() / bc2).add_(config_.eps);
    p.sub_(exp_avg_[i] / denom * step_size);
  }
}

int64_t AdamW::steps_taken() const {
  return step_count_.defined() ? static_cast<int64_t>(step_count_.item<double>()) : 0;
}

std::map<std::string, torch::Tensor> AdamW::state() const {
  std::map<std::string, torch::Tensor> out;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    out[params_[i].first + ".exp_avg"] = exp_avg_[i];
    out[params_[i].first + ".exp_avg_sq"] = exp_avg_sq_[i];
  }
  out["step"] = torch::tensor({steps_taken()}, torch::kInt64);
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
  const torch::Device device = params_.empty() ? torch::Device(torch::kCPU) : params_.front().second.device();
  step_count_ = torch::full({}, static_cast<double>(step_it->second.item<int64_t>()),
                            torch::dtype(torch::kFloat64).device(device));
}

torch::Tensor clip_grad_norm(const NamedTensors& parameters, double max_norm) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> norms;
  for (const auto& [n, p] : parameters)
    if (p.grad().defined()) norms.push_back(p.grad().norm(2).to(torch::kFloat32));
  if (norms.empty())  // on the parameters' device: the caller's checks stay there
    return torch::zeros({},
                        parameters.empty() ? torch::TensorOptions() : parameters.front().second.options());
  const torch::Tensor total = torch::stack(norms).norm(2);
  if (max_norm > 0) {
    const torch::Tensor coef = (max_norm / (total + 1e-6)).clamp_max(1.0);
    for (const auto& [n, p] : parameters)
      if (p.grad().defined()) p.grad().mul_(coef.to(p.grad().device()));
  }
  return total;
}

}  // namespace losatok::train
