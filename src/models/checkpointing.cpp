// Reentrant gradient checkpointing on torch::autograd::Function.
#include "losatok/models/checkpointing.h"

#include <torch/torch.h>

namespace losatok::models {

namespace {

// Keeps the function alive in the autograd context until backward.
struct FunctionHolder : torch::CustomClassHolder {
  explicit FunctionHolder(std::function<torch::Tensor(const torch::Tensor&)> f) : fn(std::move(f)) {}
  std::function<torch::Tensor(const torch::Tensor&)> fn;
};

struct CheckpointFunction : torch::autograd::Function<CheckpointFunction> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, torch::Tensor x,
                               c10::intrusive_ptr<FunctionHolder> holder) {
    ctx->save_for_backward({x});
    ctx->saved_data["fn"] = c10::IValue::make_capsule(holder);
    torch::NoGradGuard no_grad;
    return holder->fn(x);
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    const torch::Tensor x = ctx->get_saved_variables()[0];
    auto holder = c10::static_intrusive_pointer_cast<FunctionHolder>(ctx->saved_data["fn"].toCapsule());
    torch::Tensor input = x.detach().requires_grad_(x.requires_grad());
    torch::Tensor out;
    {
      torch::AutoGradMode grad(true);
      out = holder->fn(input);
    }
    torch::autograd::backward({out}, {grads[0]});  // parameters accumulate here
    return {input.grad(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor checkpoint(const std::function<torch::Tensor(const torch::Tensor&)>& fn,
                         const torch::Tensor& x) {
  if (!torch::GradMode::is_enabled()) return fn(x);
  return CheckpointFunction::apply(x, c10::make_intrusive<FunctionHolder>(fn));
}

}  // namespace losatok::models
