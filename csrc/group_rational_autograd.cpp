// Autograd kernel of katbench::group_rational, in C++ so that a training step pays no Python
// cost for it: the forward saves (x, numerator, denominator, bias) and the backward calls
// katbench::group_rational_backward, both through the dispatcher (CPU, CUDA, fake tensors under
// torch.compile alike). Higher derivatives (create_graph=True, e.g. u'' in a PINN) call
// katbench::group_rational_backward_differentiable instead: the reference's explicit gradient
// formulas in plain torch ops (registered in katbench/ops/__init__.py), which are themselves
// differentiable.
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include <string>

#include "op_handles.h"

namespace katbench {
namespace {

// (dx, d numerator, d denominator, d bias): the backward kernel, or for higher derivatives the
// differentiable formulas.
Grads backward_grads(bool differentiable, const at::Tensor& grad, const at::Tensor& x,
                     const at::Tensor& num, const at::Tensor& den, c10::string_view variant,
                     const OptionalTensor& bias) {
  if (differentiable) return call_differentiable_gradients(grad, x, num, den, variant, bias);
  auto [dx, dnum, dden, dbias, y] = call_group_rational_backward(grad, x, num, den, variant, bias,
                                                                 false);
  return {dx, dnum, dden, dbias};
}

class GroupRational : public torch::autograd::Function<GroupRational> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                            const at::Tensor& num, const at::Tensor& den,
                            c10::string_view variant, const OptionalTensor& bias) {
    ctx->save_for_backward({x, num, den, bias.value_or(at::Tensor())});
    ctx->saved_data["variant"] = std::string(variant);
    const at::AutoDispatchBelowADInplaceOrView below_autograd;
    return call_group_rational(x, num, den, variant, bias);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const std::string variant = ctx->saved_data["variant"].toStringRef();
    const OptionalTensor bias = maybe(saved[3]);
    auto [dx, dnum, dden, dbias] = backward_grads(at::GradMode::is_enabled(), grads[0], saved[0],
                                                  saved[1], saved[2], variant, bias);
    // needs_input_grad counts tensor inputs only (x, numerator, denominator, bias); the result
    // has one entry per argument (variant included).
    const auto needed = [&](int i, const at::Tensor& g) {
      return ctx->needs_input_grad(i) ? g : at::Tensor();
    };
    return {needed(0, dx), needed(1, dnum), needed(2, dden), at::Tensor(),
            bias ? needed(3, dbias) : at::Tensor()};
  }
};

at::Tensor group_rational_autograd(const at::Tensor& x, const at::Tensor& num,
                                   const at::Tensor& den, c10::string_view variant,
                                   const OptionalTensor& bias) {
  return GroupRational::apply(x, num, den, variant, bias);
}

}  // namespace

TORCH_LIBRARY_IMPL(katbench, Autograd, m) {
  m.impl("group_rational", &group_rational_autograd);
}

}  // namespace katbench
