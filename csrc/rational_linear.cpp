// katbench::rational_linear: linear(F(x + input_bias), weight, bias) that keeps x, not F(x), for
// its backward (a KAT block's first rational and fc1 at the memory of a GELU MLP block). Its
// forward and autograd kernels are C++ here, so that an eager training step runs no Python for
// it. The backward kernel of the rational writes F(x) again for the weight gradient (one write,
// no extra kernel), or, with lowest_peak, a forward kernel recomputes F(x) and frees it before
// the backward kernel runs (one more kernel; F never coexists with its gradient). Higher
// derivatives (create_graph=True) take the same steps with differentiable ops: F(x) through
// katbench::group_rational's autograd and the rational's gradients through
// katbench::group_rational_backward_differentiable.
#include <ATen/ops/linear.h>
#include <ATen/ops/matmul.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include <string>
#include <tuple>

#include "op_handles.h"

namespace katbench {
namespace {

at::Tensor rows(const at::Tensor& t) { return t.reshape({-1, t.size(-1)}); }

// The CPU and CUDA kernel (below autograd): what the op computes.
at::Tensor rational_linear_forward(const at::Tensor& x, const at::Tensor& num,
                                   const at::Tensor& den, c10::string_view variant,
                                   const OptionalTensor& input_bias, const at::Tensor& weight,
                                   const OptionalTensor& bias, bool /*lowest_peak*/) {
  return at::linear(call_group_rational(x, num, den, variant, input_bias), weight, bias);
}

// (dx, d numerator, d denominator, d input_bias, d weight) of linear(F(x + input_bias)) for
// grad_output; differentiable (recorded by autograd) when grad mode is on.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> gradients(
    const at::Tensor& grad_output, const at::Tensor& x, const at::Tensor& num,
    const at::Tensor& den, c10::string_view variant, const OptionalTensor& input_bias,
    const at::Tensor& weight, bool lowest_peak) {
  const at::Tensor grad_rows = rows(grad_output);
  const at::Tensor grad_f = at::matmul(grad_output, weight);
  if (at::GradMode::is_enabled()) {
    const at::Tensor f = call_group_rational(x, num, den, variant, input_bias);
    auto [dx, dnum, dden, dbias] =
        call_differentiable_gradients(grad_f, x, num, den, variant, input_bias);
    return {dx, dnum, dden, dbias, grad_rows.t().mm(rows(f))};
  }
  at::Tensor grad_weight;
  if (lowest_peak) {  // F(x) recomputed and freed before the backward kernel runs
    grad_weight = grad_rows.t().mm(rows(call_group_rational(x, num, den, variant, input_bias)));
  }
  auto [dx, dnum, dden, dbias, f] =
      call_group_rational_backward(grad_f, x, num, den, variant, input_bias, !lowest_peak);
  if (!lowest_peak) grad_weight = grad_rows.t().mm(rows(f));
  return {dx, dnum, dden, dbias, grad_weight};
}

class RationalLinear : public torch::autograd::Function<RationalLinear> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                            const at::Tensor& num, const at::Tensor& den,
                            c10::string_view variant, const OptionalTensor& input_bias,
                            const at::Tensor& weight, const OptionalTensor& bias,
                            bool lowest_peak) {
    ctx->save_for_backward({x, num, den, input_bias.value_or(at::Tensor()), weight});
    ctx->saved_data["variant"] = std::string(variant);
    ctx->saved_data["has_bias"] = bias.has_value();
    ctx->saved_data["lowest_peak"] = lowest_peak;
    const at::AutoDispatchBelowADInplaceOrView below_autograd;
    return rational_linear_forward(x, num, den, variant, input_bias, weight, bias, lowest_peak);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const std::string variant = ctx->saved_data["variant"].toStringRef();
    const OptionalTensor input_bias = maybe(saved[3]);
    auto [dx, dnum, dden, dinput_bias, dweight] =
        gradients(grads[0], saved[0], saved[1], saved[2], variant, input_bias, saved[4],
                  ctx->saved_data["lowest_peak"].toBool());
    // needs_input_grad counts the tensors passed (x, numerator, denominator, then input_bias
    // and bias only when given); the result has one entry per argument.
    const bool has_bias = ctx->saved_data["has_bias"].toBool();
    const int weight_index = input_bias ? 4 : 3;
    const auto needed = [&](int i, const at::Tensor& g) {
      return ctx->needs_input_grad(i) ? g : at::Tensor();
    };
    const at::Tensor dbias = has_bias && ctx->needs_input_grad(weight_index + 1)
                                 ? rows(grads[0]).sum(0)
                                 : at::Tensor();
    return {needed(0, dx), needed(1, dnum), needed(2, dden), at::Tensor(),
            input_bias ? needed(3, dinput_bias) : at::Tensor(), needed(weight_index, dweight),
            dbias, at::Tensor()};
  }
};

at::Tensor rational_linear_autograd(const at::Tensor& x, const at::Tensor& num,
                                    const at::Tensor& den, c10::string_view variant,
                                    const OptionalTensor& input_bias, const at::Tensor& weight,
                                    const OptionalTensor& bias, bool lowest_peak) {
  return RationalLinear::apply(x, num, den, variant, input_bias, weight, bias, lowest_peak);
}

}  // namespace

TORCH_LIBRARY_IMPL(katbench, CPU, m) { m.impl("rational_linear", &rational_linear_forward); }

TORCH_LIBRARY_IMPL(katbench, CUDA, m) { m.impl("rational_linear", &rational_linear_forward); }

TORCH_LIBRARY_IMPL(katbench, Autograd, m) {
  m.impl("rational_linear", &rational_linear_autograd);
}

}  // namespace katbench
