// Device selection from the config string (cpu | cuda | cuda:N).
#pragma once

#include <torch/types.h>

#include <string>

namespace losatok {

// Throws losatok::Error when CUDA is requested but unavailable or the index is out of range.
torch::Device resolve_device(const std::string& spec);

}  // namespace losatok
