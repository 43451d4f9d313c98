// Dynamic loss scaling for fp16 training (PyTorch's GradScaler algorithm): the loss is
// multiplied by `scale` before backward, the gradients divided by it after; a step whose
// gradients overflowed is skipped and the scale shrinks, and `growth_interval` clean steps in a
// row grow it. Everything stays on the device: no host synchronisation.
#pragma once

#include <torch/types.h>

#include <map>
#include <string>

#include "losatok/train/optimizer.h"
#include "losatok/train/train_config.h"

namespace losatok::train {

class LossScaler {
 public:
  LossScaler(const LossScaleConfig& config, const torch::Device& device);

  const torch::Tensor& scale() const { return scale_; }  // 0-d float32
  // Divides every defined gradient by the scale, in place.
  void unscale(const NamedTensors& parameters) const;
  // After a step: `found_inf` is a 0-d tensor, non-zero when the gradients were not finite.
  void update(const torch::Tensor& found_inf);

  // "scale", "growth_tracker".
  std::map<std::string, torch::Tensor> state() const;
  void load_state(const std::map<std::string, torch::Tensor>& state, const std::string& where);

 private:
  LossScaleConfig config_;
  torch::Tensor scale_, growth_tracker_;  // float32, int32 scalars on the device
};

}  // namespace losatok::train
