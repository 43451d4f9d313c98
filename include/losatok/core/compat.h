// The one place that knows which LibTorch we build against (Debian's 1.13 on CPU machines,
// a >= 2.7 wheel on GPU machines). Everything version-specific goes through here.
#pragma once

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <torch/version.h>

#include <optional>

#define LOSATOK_TORCH_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) || (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

namespace c10d {
class ProcessGroup;
class Backend;
}  // namespace c10d

namespace losatok::compat {

inline constexpr int kTorchMajor = TORCH_VERSION_MAJOR;
inline constexpr int kTorchMinor = TORCH_VERSION_MINOR;

// c10::optional became an alias of std::optional in 2.2 and is deprecated since; 1.13's
// ATen signatures take its own type.
#if LOSATOK_TORCH_AT_LEAST(2, 2)
template <class T>
using optional = std::optional<T>;
inline constexpr auto nullopt = std::nullopt;
#else
template <class T>
using optional = c10::optional<T>;
inline constexpr auto nullopt = c10::nullopt;
#endif

// c10d backends (Gloo, NCCL) derive from ProcessGroup in 1.13 and from Backend in 2.x.
#if LOSATOK_TORCH_AT_LEAST(2, 0)
using ProcessGroupBase = c10d::Backend;
#else
using ProcessGroupBase = c10d::ProcessGroup;
#endif

// True when scaled_dot_product_attention dispatches to fused kernels (flash / memory-
// efficient) instead of the math path below.
inline constexpr bool kHasFusedSdpa = LOSATOK_TORCH_AT_LEAST(2, 0);

// softmax(q k^T / sqrt(d) + mask) v for q (..., Lq, D), k/v (..., Lk, D). `mask` is either
// boolean (true = attend) or additive float, broadcastable to (..., Lq, Lk); undefined = none.
inline at::Tensor scaled_dot_product_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                               const at::Tensor& mask = {}, double dropout_p = 0.0,
                                               bool is_causal = false) {
#if LOSATOK_TORCH_AT_LEAST(2, 0)
  return at::scaled_dot_product_attention(
      q, k, v, mask.defined() ? optional<at::Tensor>(mask) : optional<at::Tensor>(), dropout_p, is_causal);
#else
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  at::Tensor scores = at::matmul(q, k.transpose(-2, -1));
  // An additive mask and the scale in one operation: mask + scale * scores.
  if (mask.defined() && mask.scalar_type() != at::kBool && !is_causal) {
    at::Tensor probs = at::softmax(at::add(mask, scores, scale), -1);
    if (dropout_p > 0.0) probs = at::dropout(probs, dropout_p, /*train=*/true);
    return at::matmul(probs, v);
  }
  scores = scores * scale;
  if (is_causal) {
    const auto lq = q.size(-2), lk = k.size(-2);
    at::Tensor causal = at::ones({lq, lk}, q.options().dtype(at::kBool)).tril();
    scores = scores.masked_fill(causal.logical_not(), -std::numeric_limits<float>::infinity());
  }
  if (mask.defined()) {
    if (mask.scalar_type() == at::kBool)  // one operation forward and one backward
      scores = at::where(mask, scores, -std::numeric_limits<float>::infinity());
    else
      scores = scores + mask;
  }
  at::Tensor probs = at::softmax(scores, -1);
  if (dropout_p > 0.0) probs = at::dropout(probs, dropout_p, /*train=*/true);
  return at::matmul(probs, v);
#endif
}

// Multi-tensor ops with a 0-d tensor as the scalar (LibTorch >= 2.4 has them natively, on the
// device, without a host sync). On 1.13 a CPU scalar is read on the host (free); a device
// scalar falls back to one op per tensor.
inline void foreach_mul_(at::TensorList self, const at::Tensor& scalar) {
#if LOSATOK_TORCH_AT_LEAST(2, 4)
  at::_foreach_mul_(self, scalar);
#else
  if (scalar.device().is_cpu()) {
    at::_foreach_mul_(self, scalar.item());
  } else {
    for (const auto& t : self) const_cast<at::Tensor&>(t).mul_(scalar);
  }
#endif
}
inline std::vector<at::Tensor> foreach_mul(at::TensorList self, const at::Tensor& scalar) {
#if LOSATOK_TORCH_AT_LEAST(2, 4)
  return at::_foreach_mul(self, scalar);
#else
  if (scalar.device().is_cpu()) return at::_foreach_mul(self, scalar.item());
  std::vector<at::Tensor> out;
  out.reserve(self.size());
  for (const auto& t : self) out.push_back(t * scalar);
  return out;
#endif
}

// AdamW as one fused kernel per group (PyTorch's fused=True: CUDA since 2.0, CPU since 2.4).
// `found_inf` (float, 0-d, 1 = skip) makes the kernel leave everything as it was, decided on the
// device; `state_steps` hold the step count after this update (float).
inline constexpr bool kHasFusedAdamW = LOSATOK_TORCH_AT_LEAST(2, 4);
inline void fused_adamw_(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs,
                         at::TensorList exp_avg_sqs, at::TensorList state_steps, double lr, double beta1,
                         double beta2, double weight_decay, double eps, const at::Tensor& found_inf) {
#if LOSATOK_TORCH_AT_LEAST(2, 4)
  at::_fused_adamw_(params, grads, exp_avgs, exp_avg_sqs, /*max_exp_avg_sqs=*/{}, state_steps, lr, beta1,
                    beta2, weight_decay, eps, /*amsgrad=*/false, /*maximize=*/false, /*grad_scale=*/nullopt,
                    found_inf.defined() ? optional<at::Tensor>(found_inf) : optional<at::Tensor>());
#else
  (void)params, (void)grads, (void)exp_avgs, (void)exp_avg_sqs, (void)state_steps, (void)lr, (void)beta1,
      (void)beta2, (void)weight_decay, (void)eps, (void)found_inf;
  TORCH_CHECK(false, "fused AdamW needs LibTorch >= 2.4");
#endif
}

// Whether CUDA autocast is on here, and its dtype (a recomputation in backward re-enters it).
inline bool cuda_autocast_enabled() {
#if LOSATOK_TORCH_AT_LEAST(2, 4)
  return at::autocast::is_autocast_enabled(at::kCUDA);
#else
  return at::autocast::is_enabled();
#endif
}
inline at::ScalarType cuda_autocast_dtype() {
#if LOSATOK_TORCH_AT_LEAST(2, 4)
  return at::autocast::get_autocast_dtype(at::kCUDA);
#else
  return at::autocast::get_autocast_gpu_dtype();
#endif
}

// RAII autocast region for CUDA, mirroring Python's `with torch.autocast("cuda", dtype)`:
// nesting is counted and the cast cache cleared when the outermost region ends. Run the
// backward pass outside it.
class AutocastGuard {
 public:
  AutocastGuard(bool enabled, at::ScalarType dtype) : active_(enabled) {
    if (!active_) return;
#if LOSATOK_TORCH_AT_LEAST(2, 4)
    prev_enabled_ = at::autocast::is_autocast_enabled(at::kCUDA);
    prev_dtype_ = at::autocast::get_autocast_dtype(at::kCUDA);
    at::autocast::set_autocast_enabled(at::kCUDA, true);
    at::autocast::set_autocast_dtype(at::kCUDA, dtype);
#else
    prev_enabled_ = at::autocast::is_enabled();
    prev_dtype_ = at::autocast::get_autocast_gpu_dtype();
    at::autocast::set_enabled(true);
    at::autocast::set_autocast_gpu_dtype(dtype);
#endif
    at::autocast::increment_nesting();
  }
  ~AutocastGuard() {
    if (!active_) return;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
#if LOSATOK_TORCH_AT_LEAST(2, 4)
    at::autocast::set_autocast_enabled(at::kCUDA, prev_enabled_);
    at::autocast::set_autocast_dtype(at::kCUDA, prev_dtype_);
#else
    at::autocast::set_enabled(prev_enabled_);
    at::autocast::set_autocast_gpu_dtype(prev_dtype_);
#endif
  }
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool active_;
  bool prev_enabled_ = false;
  at::ScalarType prev_dtype_ = at::kBFloat16;
};

}  // namespace losatok::compat
