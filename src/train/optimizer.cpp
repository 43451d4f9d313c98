// AdamW and gradient clipping.
#include "losatok/train/optimizer.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "losatok/core/compat.h"
#include "losatok/core/error.h"

namespace losatok::train {

AdamW::AdamW(std::string name, NamedTensors parameters, const OptimConfig& config)
    : name_(std::move(name)), params_(std::move(parameters)), config_(config) {
  config_.validate();
  const std::string& want = config_.implementation;
  if (want == "fused" && !compat::kHasFusedAdamW)
    throw Error("optimizer '" + name_ + "': implementation fused needs LibTorch >= 2.4 (this is " +
                std::to_string(compat::kTorchMajor) + "." + std::to_string(compat::kTorchMinor) +
                "); use auto or foreach");
  if (want == "per_tensor")
    impl_ = Impl::kPerTensor;
  else if (want == "foreach" || (want == "auto" && !compat::kHasFusedAdamW))
    impl_ = Impl::kForeach;
  else
    impl_ = Impl::kFused;
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
  // changes nothing, and the host never waits to find out (except foreach on LibTorch < 2.4).
  const torch::Tensor ok = apply.defined() ? apply.to(device, torch::kBool).reshape({})
                                           : torch::ones({}, torch::dtype(torch::kBool).device(device));
  if (impl_ == Impl::kFused)
    step_fused(lr, ok);
  else if (impl_ == Impl::kForeach)
    step_foreach(lr, ok);
  else
    step_per_tensor(lr, ok);
}

std::vector<AdamW::Group> AdamW::groups() const {
  // Parameters with a gradient, by (decay, dtype): a fused or foreach call takes one dtype and
  // one weight decay.
  std::vector<Group> out;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const torch::Tensor& p = params_[i].second;
    const torch::Tensor& g = p.grad();
    if (!g.defined()) continue;
    const bool decay = decay_[i] && config_.weight_decay > 0;
    Group* group = nullptr;
    for (auto& candidate : out)
      if (candidate.decay == decay && candidate.params.front().scalar_type() == p.scalar_type())
        group = &candidate;
    if (!group) {
      out.emplace_back();
      group = &out.back();
      group->decay = decay;
    }
    group->params.push_back(p);
    group->grads.push_back(g);
    group->exp_avg.push_back(exp_avg_[i]);
    group->exp_avg_sq.push_back(exp_avg_sq_[i]);
  }
  return out;
}

void AdamW::step_fused(double lr, const torch::Tensor& ok) {
  const double b1 = config_.betas[0], b2 = config_.betas[1];
  const torch::Tensor okf = ok.to(torch::kFloat32);
  // The kernel reads the step after this update (a float per parameter; one shared tensor).
  if (!fused_step_.defined()) fused_step_ = step_count_.to(torch::kFloat32);
  step_count_.add_(okf);
  fused_step_.add_(okf);
  const torch::Tensor found_inf = 1 - okf;
  for (const Group& g : groups()) {
    const std::vector<torch::Tensor> steps(g.params.size(), fused_step_);
    compat::fused_adamw_(g.params, g.grads, g.exp_avg, g.exp_avg_sq, steps, lr, b1, b2,
                         g.decay ? config_.weight_decay : 0.0, config_.eps, found_inf);
  }
}

void AdamW::step_foreach(double lr, const torch::Tensor& ok) {
  // The multi-tensor ops of LibTorch 1.13 take host scalars: whether the step happens is read
  // back (free on a CPU, where this path runs unless asked for; a sync on a GPU).
  if (!ok.item<bool>()) return;
  step_count_.add_(1.0);
  ++host_steps_;
  const double b1 = config_.betas[0], b2 = config_.betas[1];
  const double t = static_cast<double>(host_steps_);
  const double bc1 = 1 - std::pow(b1, t), bc2_sqrt = std::sqrt(1 - std::pow(b2, t));
  for (const Group& g : groups()) {
    if (g.decay) at::_foreach_mul_(g.params, 1 - lr * config_.weight_decay);
    at::_foreach_mul_(g.exp_avg, b1);
    at::_foreach_add_(g.exp_avg, g.grads, 1 - b1);
    at::_foreach_mul_(g.exp_avg_sq, b2);
    at::_foreach_addcmul_(g.exp_avg_sq, g.grads, g.grads, 1 - b2);
    std::vector<torch::Tensor> denom = at::_foreach_sqrt(g.exp_avg_sq);
    at::_foreach_div_(denom, bc2_sqrt);
    at::_foreach_add_(denom, config_.eps);
    at::_foreach_addcdiv_(g.params, g.exp_avg, denom, -lr / bc1);
  }
}

void AdamW::step_per_tensor(double lr, const torch::Tensor& ok) {
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
  host_steps_ = step_it->second.item<int64_t>();
  step_count_ =
      torch::full({}, static_cast<double>(host_steps_), torch::dtype(torch::kFloat64).device(device));
  fused_step_ = torch::Tensor();
}

torch::Tensor clip_grad_norm(const NamedTensors& parameters, double max_norm) {
  torch::NoGradGuard no_grad;
  // Gradients by dtype: one multi-tensor norm per dtype, one norm of those norms.
  std::vector<std::vector<torch::Tensor>> by_dtype;
  for (const auto& [n, p] : parameters) {
    const torch::Tensor& g = p.grad();
    if (!g.defined()) continue;
    auto it = std::find_if(by_dtype.begin(), by_dtype.end(),
                           [&](const auto& list) { return list.front().scalar_type() == g.scalar_type(); });
    if (it == by_dtype.end())
      by_dtype.push_back({g});
    else
      it->push_back(g);
  }
  if (by_dtype.empty())  // on the parameters' device: the caller's checks stay there
    return torch::zeros({},
                        parameters.empty() ? torch::TensorOptions() : parameters.front().second.options());
  std::vector<torch::Tensor> norms;
  for (const auto& grads : by_dtype) {
    const std::vector<torch::Tensor> each = at::_foreach_norm(grads, 2);
    torch::Tensor stacked = torch::stack(each);
    if (stacked.scalar_type() != torch::kFloat32) stacked = stacked.to(torch::kFloat32);
    norms.push_back(by_dtype.size() == 1 ? stacked : stacked.norm(2).reshape({1}));
  }
  const torch::Tensor total = (norms.size() == 1 ? norms.front() : torch::cat(norms)).norm(2);
  if (max_norm > 0) {
    const torch::Tensor coef = (max_norm / (total + 1e-6)).clamp_max(1.0);
    for (const auto& grads : by_dtype) compat::foreach_mul_(grads, coef);
  }
  return total;
}

}  // namespace losatok::train
