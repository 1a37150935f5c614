// CPU kernels of katbench::group_rational (schema defined in katbench/ops/__init__.py).
//
// x is viewed as (rows, D); each (row, group) segment of D/g channels shares one coefficient set,
// so the inner loop is a contiguous, branch-free, SIMD-vectorised sweep. Rows are split into
// fixed-size chunks processed in parallel (ATen's OpenMP pool); each chunk reduces its coefficient
// gradients into its own slot, and the slots are summed in a fixed order afterwards, so results
// do not depend on the thread count. float16/bfloat16 inputs are computed in float32.
#include <ATen/Parallel.h>
#include <ATen/TensorOperators.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "group_rational.h"

namespace katbench {
namespace {

constexpr int kLanes = 16;                   // lane-blocked gradient accumulators
constexpr int64_t kChunkElements = 1 << 15;  // elements per parallel chunk

bool has_large(const float* v, int64_t count) {
  int large = 0;
  for (int64_t i = 0; i < count; ++i) large |= std::fabs(v[i]) > kLargeInput;
  return large != 0;
}
bool has_large(const double*, int64_t) { return false; }

// The coefficients in T, contiguous: the tensor itself when it already is (no ATen op).
template <typename T>
at::Tensor coefficients_as(const at::Tensor& t) {
  const auto type = c10::CppTypeToScalarType<T>::value;
  return (t.scalar_type() == type ? t : t.to(type)).contiguous();
}

// Each group's coefficients, zero beyond the orders given (load_group pads to MM, NN); a shared
// (1, m+1) numerator serves every group.
template <typename T, int MM, int NN, bool SUM_ABS>
std::vector<GroupCoefficients<T, MM, NN>> load_groups(const at::Tensor& num, const at::Tensor& den) {
  const auto a = coefficients_as<T>(num);
  const auto b = coefficients_as<T>(den);
  const int64_t m = a.size(1) - 1, n = b.size(1);
  const bool shared = a.size(0) == 1;
  std::vector<GroupCoefficients<T, MM, NN>> groups(b.size(0));
  for (int64_t gi = 0; gi < b.size(0); ++gi) {
    const T* a_row = a.template data_ptr<T>() + (shared ? 0 : gi) * (m + 1);
    load_group<T, MM, NN, SUM_ABS>(groups[gi], a_row, b.template data_ptr<T>() + gi * n,
                                   static_cast<int>(m), static_cast<int>(n));
  }
  return groups;
}

template <typename T, int MM, int NN, bool SUM_ABS>
void forward_impl(const T* x, T* y, const at::Tensor& num, const at::Tensor& den,
                  const Geometry& geo) {
  const auto groups = load_groups<T, MM, NN, SUM_ABS>(num, den);
  const int64_t grain = std::max<int64_t>(1, kChunkElements / geo.width);
  at::parallel_for(0, geo.rows, grain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      for (int64_t gi = 0; gi < geo.groups; ++gi) {
        const auto& k = groups[gi];
        const int64_t offset = r * geo.width + gi * geo.group_width;
        const T* xs = x + offset;
        T* ys = y + offset;
#pragma omp simd
        for (int64_t c = 0; c < geo.group_width; ++c)
          ys[c] = rational_forward<T, MM, NN, SUM_ABS>(xs[c], k);
        if (has_large(xs, geo.group_width)) {
          // Rare path: inputs too large for float powers are evaluated in double.
          for (int64_t c = 0; c < geo.group_width; ++c)
            if (std::fabs(xs[c]) > kLargeInput)
              ys[c] = static_cast<T>(rational_forward<double, MM, NN, SUM_ABS>(xs[c], k));
        }
      }
    }
  });
}

// One (row, group) segment of the backward pass; adds coefficient gradients into acc (K slots;
// dL/d|b_k| for sum_abs until backward_impl applies the signs).
template <typename T, int MM, int NN, bool SUM_ABS>
void backward_segment(const T* xs, const T* gs, T* dxs, int64_t count,
                      const GroupCoefficients<T, MM, NN>& k, double* acc) {
  constexpr int K = MM + 1 + NN;
  if (has_large(xs, count)) {
    double sums[K] = {};
    for (int64_t c = 0; c < count; ++c) {
      const auto t = rational_backward<double, MM, NN, SUM_ABS>(xs[c], gs[c], k);
      dxs[c] = static_cast<T>(t.dx);
      add_coefficient_grads<double, MM, NN>(xs[c], t.gq, t.gf, t.u, sums, 1);
    }
    for (int s = 0; s < K; ++s) acc[s] += sums[s];
    return;
  }
  T lanes[K][kLanes] = {};
  int64_t c0 = 0;
  for (; c0 + kLanes <= count; c0 += kLanes) {
#pragma omp simd
    for (int l = 0; l < kLanes; ++l) {
      const T xv = xs[c0 + l];
      const auto t = rational_backward<T, MM, NN, SUM_ABS>(xv, gs[c0 + l], k);
      dxs[c0 + l] = t.dx;
      add_coefficient_grads<T, MM, NN>(xv, t.gq, t.gf, t.u, &lanes[0][l], kLanes);
    }
  }
  for (int64_t c = c0; c < count; ++c) {
    const auto t = rational_backward<T, MM, NN, SUM_ABS>(xs[c], gs[c], k);
    dxs[c] = t.dx;
    add_coefficient_grads<T, MM, NN>(xs[c], t.gq, t.gf, t.u, &lanes[0][0], kLanes);
  }
  for (int s = 0; s < K; ++s) {
    double total = 0.0;
    for (int l = 0; l < kLanes; ++l) total += lanes[s][l];
    acc[s] += total;
  }
}

template <typename T, int MM, int NN, bool SUM_ABS>
at::Tensor backward_impl(const T* grad, const T* x, T* dx, const at::Tensor& num,
                         const at::Tensor& den, const Geometry& geo) {
  constexpr int K = MM + 1 + NN;
  const auto groups = load_groups<T, MM, NN, SUM_ABS>(num, den);
  // Fixed chunking (independent of the thread count) keeps the reduction order deterministic.
  const int64_t rows_per_chunk = std::max<int64_t>(1, kChunkElements / geo.width);
  const int64_t chunks = (geo.rows + rows_per_chunk - 1) / rows_per_chunk;
  auto partial = at::zeros({chunks, geo.groups, K}, at::kDouble);
  double* acc = partial.data_ptr<double>();
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t chunk = begin; chunk < end; ++chunk) {
      const int64_t r_end = std::min(geo.rows, (chunk + 1) * rows_per_chunk);
      for (int64_t r = chunk * rows_per_chunk; r < r_end; ++r) {
        for (int64_t gi = 0; gi < geo.groups; ++gi) {
          const int64_t offset = r * geo.width + gi * geo.group_width;
          backward_segment<T, MM, NN, SUM_ABS>(x + offset, grad + offset, dx + offset,
                                               geo.group_width, groups[gi],
                                               acc + (chunk * geo.groups + gi) * K);
        }
      }
    }
  });
  auto sums = partial.sum(0);  // (groups, K), summed in chunk order
  const auto b = den.to(at::kDouble).contiguous();
  for (int64_t gi = 0; gi < geo.groups; ++gi)
    apply_denominator_signs<MM, NN, SUM_ABS>(b.data_ptr<double>() + gi * geo.n, geo.n,
                                             sums.data_ptr<double>() + gi * K);
  return sums;
}

at::ScalarType compute_type(const at::Tensor& x) {
  return x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

// x + bias in the arithmetic dtype, contiguous (the CPU kernels add the bias up front).
at::Tensor shifted_input(const at::Tensor& x, const std::optional<at::Tensor>& bias) {
  const auto type = compute_type(x);
  return (bias ? x.to(type) + bias->to(type) : x.to(type)).contiguous();
}

// F of the shifted input xc (from shifted_input), in xc's dtype.
at::Tensor evaluate(const at::Tensor& xc, const at::Tensor& num, const at::Tensor& den,
                    bool sum_abs, const Geometry& geo) {
  auto y = at::empty_like(xc, at::MemoryFormat::Contiguous);
  if (geo.rows > 0) {
    AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), "group_rational_cpu", [&] {
      dispatch_orders(geo, sum_abs, [&](auto orders, auto sum_abs_t) {
        forward_impl<scalar_t, decltype(orders.first)::value, decltype(orders.second)::value,
                     decltype(sum_abs_t)::value>(xc.data_ptr<scalar_t>(),
                                                 y.data_ptr<scalar_t>(), num, den, geo);
      });
    });
  }
  return y;
}

at::Tensor group_rational_cpu(const at::Tensor& x, const at::Tensor& num, const at::Tensor& den,
                              c10::string_view variant, const std::optional<at::Tensor>& bias) {
  const bool sum_abs = is_sum_abs(variant);
  const Geometry geo = geometry(x, num, den, bias);
  return evaluate(shifted_input(x, bias), num, den, sum_abs, geo).to(x.scalar_type());
}

// The fused outputs (F(x + bias), the bias gradient) are the forward kernel's result and a sum
// over rows here: they exist for the GPU, where they save a kernel's memory traffic.
BackwardResult group_rational_backward_cpu(const at::Tensor& grad_output, const at::Tensor& x,
                                           const at::Tensor& num, const at::Tensor& den,
                                           c10::string_view variant,
                                           const std::optional<at::Tensor>& bias, bool output) {
  const bool sum_abs = is_sum_abs(variant);
  const Geometry geo = geometry(x, num, den, bias);
  const auto xc = shifted_input(x, bias);
  const auto gc = grad_output.to(xc.scalar_type()).contiguous();
  auto dx = at::empty_like(xc, at::MemoryFormat::Contiguous);
  at::Tensor sums = at::zeros({geo.groups, kMaxNumeratorOrder + 1 + kMaxDenominatorOrder},
                              at::kDouble);
  int mm = kMaxNumeratorOrder;
  if (geo.rows > 0) {
    AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), "group_rational_backward_cpu", [&] {
      dispatch_orders(geo, sum_abs, [&](auto orders, auto sum_abs_t) {
        mm = decltype(orders.first)::value;
        sums = backward_impl<scalar_t, decltype(orders.first)::value,
                             decltype(orders.second)::value, decltype(sum_abs_t)::value>(
            gc.data_ptr<scalar_t>(), xc.data_ptr<scalar_t>(), dx.data_ptr<scalar_t>(), num, den,
            geo);
      });
    });
  }
  auto [grad_num, grad_den] = split_coefficient_grads(sums, mm, num, den);
  const auto grad_bias = bias ? dx.reshape({geo.rows, geo.width}).sum(0) : at::Tensor();
  const auto y = output ? evaluate(xc, num, den, sum_abs, geo).to(x.scalar_type()) : at::Tensor();
  return backward_result(dx.to(x.scalar_type()), grad_num, grad_den, grad_bias, y, bias);
}

}  // namespace

TORCH_LIBRARY_IMPL(katbench, CPU, m) {
  m.impl("group_rational", &group_rational_cpu);
  m.impl("group_rational_backward", &group_rational_backward_cpu);
}

}  // namespace katbench
