// Gradient (activation) checkpointing, which LibTorch lacks: the wrapped function runs without
// keeping its activations, and backward runs it again under autograd (the reentrant scheme of
// torch.utils.checkpoint). Trades one extra forward pass for the activation memory of `fn`.
#pragma once

#include <torch/types.h>

#include <functional>
#include <vector>

namespace losatok::models {

// fn(x) with the activations inside `fn` recomputed in backward. Gradients reach `x` and every
// parameter `fn` uses, exactly as without checkpointing. `fn` must be deterministic (no
// dropout) and x must require grad for the parameters' gradients to flow (as in PyTorch's
// reentrant checkpoint). Outside grad mode it is just fn(x).
torch::Tensor checkpoint(const std::function<torch::Tensor(const torch::Tensor&)>& fn,
                         const torch::Tensor& x);

// The same for a function of up to five tensors (undefined ones allowed): gradients reach
// every input that requires grad. Tensors `fn` captures instead must not require grad.
torch::Tensor checkpoint(const std::function<torch::Tensor(const std::vector<torch::Tensor>&)>& fn,
                         const std::vector<torch::Tensor>& inputs);

}  // namespace losatok::models
