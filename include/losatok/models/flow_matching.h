// Rectified flow as docs/method.md, "DiT" (the UniFlow-Audio convention, noise at sigma = 1):
// x_sigma = (1 - sigma) z + sigma e, target v = e - z; the Euler ODE sampler from sigma = 1
// to 0 with optional sway sampling, and classifier-free guidance.
#pragma once

#include <torch/types.h>

#include <functional>
#include <vector>

#include "losatok/models/dit_config.h"

namespace losatok::models {

// n training sigmas in (0, 1): sigmoid(N(logit_mean, logit_std)) or uniform, from the default
// generator of `options`' device.
torch::Tensor sample_sigmas(int64_t n, const FlowConfig& config, const torch::TensorOptions& options);

// x_sigma for z, e (B, T, D) and sigma (B).
torch::Tensor flow_interpolate(const torch::Tensor& z, const torch::Tensor& noise,
                               const torch::Tensor& sigma);
// The velocity the model learns: e - z.
torch::Tensor flow_target(const torch::Tensor& z, const torch::Tensor& noise);

// steps + 1 sigmas from 1 down to 0. Sway sampling (F5-TTS) moves the time grid
// t_i = i / steps to t + s (cos(pi t / 2) - 1 + t) (s < 0: more steps near the noise); sigma = 1 - t.
std::vector<double> sigma_schedule(int steps, double sway);

// Integrates dx/dsigma = velocity(x, sigma) from x at sigmas.front() to sigmas.back() with Euler
// steps x <- x + (sigma_next - sigma) v.
torch::Tensor euler_sample(const torch::Tensor& x, const std::vector<double>& sigmas,
                           const std::function<torch::Tensor(const torch::Tensor&, double)>& velocity);

// v_uncond + scale (v_cond - v_uncond): scale 1 is the conditional model.
torch::Tensor classifier_free_guidance(const torch::Tensor& v_cond, const torch::Tensor& v_uncond,
                                       double scale);

}  // namespace losatok::models
