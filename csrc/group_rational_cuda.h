// The CUDA kernels of katbench::group_rational as the entry points (group_rational_cuda.cpp) see
// them: defined in group_rational_cuda.cuh, instantiated for each dtype in its own translation
// unit (group_rational_cuda_<dtype>.cu), so that ninja compiles the dtypes in parallel.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <utility>

#include "group_rational.h"

namespace katbench {

// y = F(x + bias) for contiguous x and y; bias undefined or (D,).
template <typename scalar_t>
void forward_cuda(const at::Tensor& x, at::Tensor& y, const at::Tensor& num,
                  const at::Tensor& den, const std::optional<at::Tensor>& bias,
                  const Geometry& geo, bool sum_abs);

// Writes dx, y = F(x + bias) where y is defined and the bias gradient (column sums of dx, in the
// arithmetic dtype) where there is a bias; returns the numerator and denominator gradients in
// the arithmetic dtype.
template <typename scalar_t>
std::pair<at::Tensor, at::Tensor> backward_cuda(const at::Tensor& grad, const at::Tensor& x,
                                                at::Tensor& dx, at::Tensor& y,
                                                const std::optional<at::Tensor>& bias,
                                                at::Tensor& grad_bias, const at::Tensor& num,
                                                const at::Tensor& den, const Geometry& geo,
                                                bool sum_abs);

}  // namespace katbench
