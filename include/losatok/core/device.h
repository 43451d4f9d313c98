// Device selection from the config string (cpu | cuda | cuda:N).
#pragma once

#include <torch/types.h>

#include <optional>
#include <string>

namespace losatok {

// Throws losatok::Error when CUDA is requested but unavailable or the index is out of range.
torch::Device resolve_device(const std::string& spec);

// A host tensor on `device` as `dtype` (undefined: its own): to a GPU through pinned memory
// and a non-blocking copy, so the host does not wait for the GPU's queue to drain (the pinned
// block stays reserved until the copy has run); elsewhere a plain `to`.
inline torch::Tensor to_device(const torch::Tensor& t, const torch::Device& device,
                               std::optional<torch::ScalarType> dtype = std::nullopt) {
  const torch::ScalarType type = dtype ? *dtype : t.scalar_type();
  if (!device.is_cuda() || !t.device().is_cpu()) return t.to(device, type);
  const torch::Tensor host = t.scalar_type() == type ? t : t.to(type);
  return host.pin_memory().to(torch::TensorOptions().device(device), /*non_blocking=*/true);
}

}  // namespace losatok
