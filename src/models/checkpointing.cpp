// Reentrant gradient checkpointing on torch::autograd::Function.
#include "losatok/models/checkpointing.h"

#include <torch/torch.h>

#include "losatok/core/compat.h"
#include "losatok/core/error.h"

namespace losatok::models {

namespace {

using MultiFn = std::function<torch::Tensor(const std::vector<torch::Tensor>&)>;

// Keeps the function alive in the autograd context until backward.
struct FunctionHolder : torch::CustomClassHolder {
  explicit FunctionHolder(MultiFn f) : fn(std::move(f)) {}
  MultiFn fn;
};

// A fixed number of tensor slots: LibTorch 1.13's Function::apply takes tensors one argument
// each, and none may be undefined (an undefined input travels as an empty placeholder).
constexpr std::size_t kSlots = 5;

struct CheckpointFunction : torch::autograd::Function<CheckpointFunction> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, torch::Tensor a, torch::Tensor b,
                               torch::Tensor c, torch::Tensor d, torch::Tensor e, int64_t count,
                               int64_t undefined, c10::intrusive_ptr<FunctionHolder> holder) {
    ctx->save_for_backward({a, b, c, d, e});
    ctx->saved_data["fn"] = c10::IValue::make_capsule(holder);
    ctx->saved_data["count"] = count;
    ctx->saved_data["undefined"] = undefined;
    // Backward runs outside the step's autocast region: the recomputation re-enters it, so it
    // builds the graph the forward pass ran.
    ctx->saved_data["autocast"] = compat::cuda_autocast_enabled();
    ctx->saved_data["autocast_dtype"] = static_cast<int64_t>(compat::cuda_autocast_dtype());
    torch::NoGradGuard no_grad;
    std::vector<torch::Tensor> in = {a, b, c, d, e};
    in.resize(count);
    for (int64_t i = 0; i < count; ++i)
      if (undefined & (1 << i)) in[i] = torch::Tensor();
    return holder->fn(in);
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const int64_t count = ctx->saved_data["count"].toInt();
    const int64_t undefined = ctx->saved_data["undefined"].toInt();
    auto holder = c10::static_intrusive_pointer_cast<FunctionHolder>(ctx->saved_data["fn"].toCapsule());
    std::vector<torch::Tensor> inputs;
    for (int64_t i = 0; i < count; ++i)
      inputs.push_back((undefined & (1 << i)) ? torch::Tensor()
                                              : saved[i].detach().requires_grad_(saved[i].requires_grad()));
    torch::Tensor out;
    {
      torch::AutoGradMode grad(true);
      const compat::AutocastGuard autocast(
          ctx->saved_data["autocast"].toBool(),
          static_cast<at::ScalarType>(ctx->saved_data["autocast_dtype"].toInt()));
      out = holder->fn(inputs);
    }
    torch::autograd::backward({out}, {grads[0]});  // parameters accumulate here
    torch::autograd::tensor_list result(kSlots + 3);
    for (int64_t i = 0; i < count; ++i)
      if (inputs[i].defined() && inputs[i].requires_grad()) result[i] = inputs[i].grad();
    return result;
  }
};

}  // namespace

torch::Tensor checkpoint(const std::function<torch::Tensor(const std::vector<torch::Tensor>&)>& fn,
                         const std::vector<torch::Tensor>& inputs) {
  if (inputs.size() > kSlots)
    throw Error("checkpoint: at most " + std::to_string(kSlots) + " tensor inputs, got " +
                std::to_string(inputs.size()));
  if (!torch::GradMode::is_enabled()) return fn(inputs);
  std::vector<torch::Tensor> slots = inputs;
  slots.resize(kSlots);
  int64_t undefined = 0;
  for (std::size_t i = 0; i < kSlots; ++i)
    if (!slots[i].defined()) {
      slots[i] = torch::empty({0});
      undefined |= int64_t{1} << i;
    }
  return CheckpointFunction::apply(slots[0], slots[1], slots[2], slots[3], slots[4],
                                   static_cast<int64_t>(inputs.size()), undefined,
                                   c10::make_intrusive<FunctionHolder>(fn));
}

torch::Tensor checkpoint(const std::function<torch::Tensor(const torch::Tensor&)>& fn,
                         const torch::Tensor& x) {
  return checkpoint([fn](const std::vector<torch::Tensor>& in) { return fn(in[0]); },
                    std::vector<torch::Tensor>{x});
}

}  // namespace losatok::models
