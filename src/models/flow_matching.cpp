// Rectified-flow training targets and the Euler sampler.
#include "losatok/models/flow_matching.h"

#include <torch/torch.h>

#include <cmath>

#include "losatok/core/error.h"

namespace losatok::models {

torch::Tensor sample_sigmas(int64_t n, const FlowConfig& config, const torch::TensorOptions& options) {
  if (config.sigma_sampling == "uniform") return torch::rand({n}, options);
  return torch::sigmoid(torch::randn({n}, options) * config.logit_std + config.logit_mean);
}

torch::Tensor flow_interpolate(const torch::Tensor& z, const torch::Tensor& noise,
                               const torch::Tensor& sigma) {
  const torch::Tensor s = sigma.to(z.scalar_type()).view({-1, 1, 1});
  return (1 - s) * z + s * noise;
}

torch::Tensor flow_target(const torch::Tensor& z, const torch::Tensor& noise) {
  return noise - z;
}

std::vector<double> sigma_schedule(int steps, double sway) {
  if (steps < 1) throw Error("sampler: steps must be >= 1, got " + std::to_string(steps));
  std::vector<double> out;
  for (int i = 0; i <= steps; ++i) {
    double t = static_cast<double>(i) / steps;
    if (sway != 0) t = t + sway * (std::cos(M_PI / 2 * t) - 1 + t);
    out.push_back(i == steps ? 0.0 : 1.0 - t);
  }
  out.front() = 1.0;
  return out;
}

torch::Tensor euler_sample(const torch::Tensor& x0, const std::vector<double>& sigmas,
                           const std::function<torch::Tensor(const torch::Tensor&, double)>& velocity) {
  torch::Tensor x = x0;
  for (std::size_t i = 0; i + 1 < sigmas.size(); ++i)
    x = x + (sigmas[i + 1] - sigmas[i]) * velocity(x, sigmas[i]);
  return x;
}

torch::Tensor classifier_free_guidance(const torch::Tensor& v_cond, const torch::Tensor& v_uncond,
                                       double scale) {
  return v_uncond + scale * (v_cond - v_uncond);
}

}  // namespace losatok::models
