// Implementation of arcflow/core/activation_checkpoint.h: a custom autograd function whose
// forward runs the block under NoGradGuard and whose backward recomputes it on detached copies of
// the inputs and calls torch::autograd::backward on the recomputed outputs, which both fills the
// copies' .grad (returned as the inputs' gradients) and accumulates the parameters' .grad.
#include "arcflow/core/activation_checkpoint.h"

namespace arcflow {
namespace {

struct FnHolder : torch::CustomClassHolder {
  explicit FnHolder(BlockFn f) : fn(std::move(f)) {}
  BlockFn fn;
};

class CheckpointFunction : public torch::autograd::Function<CheckpointFunction> {
 public:
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx,
                                                c10::intrusive_ptr<FnHolder> holder, at::TensorList list) {
    // (A TensorList, not a std::vector: autograd counts only Tensor and TensorList arguments as inputs.)
    const torch::autograd::variable_list inputs(list.begin(), list.end());
    ctx->saved_data["fn"] = c10::IValue::make_capsule(holder);
    ctx->save_for_backward(inputs);
    torch::NoGradGuard no_grad;
    // The last input is a dummy that requires a gradient (see checkpointed()); fn never sees it.
    return holder->fn(torch::autograd::variable_list(inputs.begin(), inputs.end() - 1));
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    auto holder = c10::static_intrusive_pointer_cast<FnHolder>(ctx->saved_data["fn"].toCapsule());
    const torch::autograd::variable_list saved = ctx->get_saved_variables();
    torch::autograd::variable_list inputs;
    for (const auto& t : saved) {
      torch::Tensor d = t.detach();
      d.set_requires_grad(t.requires_grad());
      inputs.push_back(d);
    }
    torch::autograd::variable_list outputs;
    {
      torch::AutoGradMode grad_on(true);
      outputs = holder->fn(torch::autograd::variable_list(inputs.begin(), inputs.end() - 1));
    }
    torch::autograd::variable_list outs, grads;
    for (size_t i = 0; i < outputs.size(); ++i)
      if (outputs[i].requires_grad() && grad_outputs[i].defined()) {
        outs.push_back(outputs[i]);
        grads.push_back(grad_outputs[i]);
      }
    if (!outs.empty()) torch::autograd::backward(outs, grads);
    torch::autograd::variable_list result;
    result.emplace_back();  // no gradient for the holder
    for (const auto& in : inputs) result.push_back(in.requires_grad() ? in.grad() : torch::Tensor());
    return result;
  }
};

}  // namespace

std::vector<torch::Tensor> checkpointed(const BlockFn& fn, const std::vector<torch::Tensor>& inputs) {
  if (!torch::GradMode::is_enabled()) return fn(inputs);
  // A dummy input that requires a gradient keeps the block in the graph even when none of its real
  // inputs does (the parameters inside it may: LoRA).
  std::vector<torch::Tensor> with_dummy = inputs;
  with_dummy.push_back(torch::zeros({}, torch::TensorOptions().requires_grad(true)));
  return CheckpointFunction::apply(c10::make_intrusive<FnHolder>(fn), at::TensorList(with_dummy));
}

}  // namespace arcflow
