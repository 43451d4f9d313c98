// Gradient (activation) checkpointing, which LibTorch lacks: the wrapped function runs without
// keeping its activations, and backward runs it again under autograd (the reentrant scheme of
// torch.utils.checkpoint). Trades one extra forward pass for the activation memory of `fn`.
#pragma once

#include <torch/types.h>

#include <functional>

namespace losatok::models {

// fn(x) with the activations inside `fn` recomputed in backward. Gradients reach `x` and every
// parameter `fn` uses, exactly as without checkpointing. `fn` must be deterministic (no
// dropout) and x must require grad for the parameters' gradients to flow (as in PyTorch's
// reentrant checkpoint). Outside grad mode it is just fn(x).
torch::Tensor checkpoint(const std::function<torch::Tensor(const torch::Tensor&)>& fn,
                         const torch::Tensor& x);

}  // namespace losatok::models
