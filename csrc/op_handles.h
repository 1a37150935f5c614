// katbench's ops called through the dispatcher, for the C++ autograd kernels
// (group_rational_autograd.cpp, rational_linear.cpp): a call reaches the CPU, CUDA or fake
// kernel of its tensors alike. Kept out of group_rational.h, which nvcc parses too.
#pragma once

#include <ATen/core/dispatch/Dispatcher.h>

#include <optional>
#include <tuple>

#include "group_rational.h"

namespace katbench {

using OptionalTensor = std::optional<at::Tensor>;
using Grads = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

// katbench::group_rational: F(x + bias).
inline at::Tensor call_group_rational(const at::Tensor& x, const at::Tensor& num,
                                      const at::Tensor& den, c10::string_view variant,
                                      const OptionalTensor& bias) {
  using Signature = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                               c10::string_view, const OptionalTensor&);
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("katbench::group_rational", "")
                             .typed<Signature>();
  return op.call(x, num, den, variant, bias);
}

// katbench::group_rational_backward: the backward kernel (F written with ``output``).
inline BackwardResult call_group_rational_backward(const at::Tensor& grad, const at::Tensor& x,
                                                   const at::Tensor& num, const at::Tensor& den,
                                                   c10::string_view variant,
                                                   const OptionalTensor& bias, bool output) {
  using Signature = BackwardResult(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                   const at::Tensor&, c10::string_view, const OptionalTensor&,
                                   bool);
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("katbench::group_rational_backward", "")
                             .typed<Signature>();
  return op.call(grad, x, num, den, variant, bias, output);
}

// katbench::group_rational_backward_differentiable: (dx, d numerator, d denominator, d bias)
// from the reference's formulas, recorded by autograd (higher derivatives).
inline Grads call_differentiable_gradients(const at::Tensor& grad, const at::Tensor& x,
                                           const at::Tensor& num, const at::Tensor& den,
                                           c10::string_view variant,
                                           const OptionalTensor& bias) {
  using Signature = Grads(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                          const at::Tensor&, c10::string_view, const OptionalTensor&);
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("katbench::group_rational_backward_differentiable", "")
          .typed<Signature>();
  return op.call(grad, x, num, den, variant, bias);
}

// An optional tensor from a saved one (undefined: none).
inline OptionalTensor maybe(const at::Tensor& t) {
  return t.defined() ? OptionalTensor(t) : OptionalTensor(std::nullopt);
}

}  // namespace katbench
