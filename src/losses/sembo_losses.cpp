// SemBo's losses: normalised reconstruction and time-relation MSE, masked to valid tokens.
#include "losatok/losses/sembo_losses.h"

#include <torch/torch.h>

namespace losatok::losses {

torch::Tensor l2_normalize(const torch::Tensor& x) {
  return x / x.norm(2, -1, true).clamp_min(1e-12);
}

namespace {
torch::Tensor float_mask(const torch::Tensor& mask, const torch::Tensor& like) {
  return mask.to(like.scalar_type());
}
}  // namespace

torch::Tensor reconstruction_loss(const torch::Tensor& restored, const torch::Tensor& target,
                                  const torch::Tensor& mask) {
  const torch::Tensor m = float_mask(mask, restored).unsqueeze(-1);  // (B, T, 1)
  const torch::Tensor diff = (l2_normalize(restored) - l2_normalize(target.detach())).pow(2) * m;
  return diff.sum() / (m.sum() * restored.size(-1)).clamp_min(1);
}

torch::Tensor time_relation_matrix(const torch::Tensor& x) {
  const torch::Tensor n = l2_normalize(x);
  return torch::matmul(n, n.transpose(1, 2));
}

torch::Tensor time_relation_loss(const torch::Tensor& low, const torch::Tensor& high,
                                 const torch::Tensor& mask) {
  const torch::Tensor m = float_mask(mask, low);
  const torch::Tensor pairs = m.unsqueeze(2) * m.unsqueeze(1);  // (B, T, T)
  const torch::Tensor diff = (time_relation_matrix(low) - time_relation_matrix(high.detach())).pow(2) * pairs;
  return diff.sum() / pairs.sum().clamp_min(1);
}

torch::Tensor cosine_error(const torch::Tensor& restored, const torch::Tensor& target,
                           const torch::Tensor& mask) {
  const torch::Tensor m = float_mask(mask, restored);
  const torch::Tensor cos = (l2_normalize(restored) * l2_normalize(target)).sum(-1);  // (B, T)
  return ((1 - cos) * m).sum() / m.sum().clamp_min(1);
}

}  // namespace losatok::losses
