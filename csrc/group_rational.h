// Host-side helpers shared by the CPU and CUDA entry points of katbench::group_rational:
// argument checks, the (rows, D) geometry, and dispatch to the compiled order instantiations.
#pragma once

// Per-operator headers rather than <ATen/ATen.h>, whose parsing was most of a CUDA translation
// unit's compile time (nvcc, torch 2.14: 89 s for ATen.h and CUDAContext.h against 25 s).
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>

#include <optional>
#include <string>
#include <tuple>
#include <type_traits>

#include "rational_math.h"

namespace katbench {

struct Geometry {
  int64_t rows, width, groups, group_width;
  int m, n;
};

inline bool is_sum_abs(c10::string_view variant) {
  TORCH_CHECK(variant == "sum_abs" || variant == "abs_sum", "group_rational: unknown variant '",
              std::string(variant), "' (use sum_abs or abs_sum)");
  return variant == "sum_abs";
}

inline Geometry geometry(const at::Tensor& x, const at::Tensor& num, const at::Tensor& den,
                         const std::optional<at::Tensor>& bias) {
  TORCH_CHECK(x.dim() >= 1, "group_rational: x must have at least one dimension (..., D)");
  TORCH_CHECK(at::isFloatingType(x.scalar_type()) && at::isFloatingType(num.scalar_type()) &&
                  at::isFloatingType(den.scalar_type()),
              "group_rational: x, numerator and denominator must be floating-point tensors");
  TORCH_CHECK(num.device() == x.device() && den.device() == x.device(),
              "group_rational: x, numerator and denominator must be on one device");
  TORCH_CHECK(num.dim() == 2 && den.dim() == 2 &&
                  (num.size(0) == den.size(0) || num.size(0) == 1),
              "group_rational: numerator must be (g, m+1) or shared (1, m+1), denominator (g, n)");
  Geometry geo;
  geo.width = x.size(-1);
  geo.groups = den.size(0);
  TORCH_CHECK(geo.groups > 0 && geo.width % geo.groups == 0, "group_rational: width D=",
              geo.width, " is not divisible by g=", geo.groups, " groups");
  TORCH_CHECK(!bias || (bias->dim() == 1 && bias->size(0) == geo.width &&
                        at::isFloatingType(bias->scalar_type()) && bias->device() == x.device()),
              "group_rational: bias must be a floating-point (D,) = (", geo.width,
              ",) tensor on x's device");
  geo.rows = geo.width == 0 ? 0 : x.numel() / geo.width;
  geo.group_width = geo.width / geo.groups;
  geo.m = static_cast<int>(num.size(1)) - 1;
  geo.n = static_cast<int>(den.size(1));
  TORCH_CHECK(geo.m >= 0 && geo.m <= kMaxNumeratorOrder && geo.n >= 1 &&
                  geo.n <= kMaxDenominatorOrder,
              "group_rational: orders (m=", geo.m, ", n=", geo.n, ") outside 0<=m<=8, 1<=n<=8");
  return geo;
}

// Calls body(MM, NN, SUM_ABS) with compile-time constants: the (5, 4) fast path or the
// zero-padded (8, 8) path for every other order.
template <typename F>
void dispatch_orders(const Geometry& geo, bool sum_abs, F&& body) {
  using Fast = std::pair<std::integral_constant<int, 5>, std::integral_constant<int, 4>>;
  using Padded = std::pair<std::integral_constant<int, kMaxNumeratorOrder>,
                           std::integral_constant<int, kMaxDenominatorOrder>>;
  const bool fast = geo.m == 5 && geo.n == 4;
  if (fast && sum_abs) body(Fast{}, std::true_type{});
  else if (fast) body(Fast{}, std::false_type{});
  else if (sum_abs) body(Padded{}, std::true_type{});
  else body(Padded{}, std::false_type{});
}

// Splits (g, MM+1+NN) coefficient-gradient sums into the numerator and denominator gradients; a
// shared (1, m+1) numerator gets the sum over groups (in group order).
inline std::tuple<at::Tensor, at::Tensor> split_coefficient_grads(const at::Tensor& sums, int mm,
                                                                  const at::Tensor& num,
                                                                  const at::Tensor& den) {
  auto grad_num = sums.narrow(1, 0, num.size(1));
  if (num.size(0) != sums.size(0)) grad_num = grad_num.sum(0, /*keepdim=*/true);
  return {grad_num.to(num.scalar_type()).contiguous(),
          sums.narrow(1, mm + 1, den.size(1)).to(den.scalar_type()).contiguous()};
}

// The input bias in the arithmetic dtype, contiguous and 16-byte aligned (the CUDA kernels load
// it 16 bytes at a time); undefined without one.
inline at::Tensor bias_as(const std::optional<at::Tensor>& bias, at::ScalarType type) {
  if (!bias) return at::Tensor();
  auto b = bias->to(type).contiguous();
  return reinterpret_cast<uintptr_t>(b.data_ptr()) % 16 == 0 ? b : b.clone();
}

// (dx, d numerator, d denominator, d bias, F(x + bias)) of katbench::group_rational_backward.
using BackwardResult = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

// The op's outputs: d bias in the bias's dtype (zeros where no rows were summed), and empty
// tensors for d bias without a bias and for F(x + bias) not asked for (undefined y).
inline BackwardResult backward_result(const at::Tensor& dx, const at::Tensor& grad_num,
                                      const at::Tensor& grad_den, const at::Tensor& grad_bias,
                                      const at::Tensor& y, const std::optional<at::Tensor>& bias) {
  const auto empty = dx.new_empty({0});
  at::Tensor db = empty;
  if (bias) db = grad_bias.defined() ? grad_bias.to(bias->scalar_type()) : at::zeros_like(*bias);
  return {dx, grad_num, grad_den, db, y.defined() ? y : empty};
}

}  // namespace katbench
