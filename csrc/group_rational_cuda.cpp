// CUDA entry points of katbench::group_rational (schema defined in katbench/ops/__init__.py):
// argument checks, outputs, and dispatch by dtype to the kernels of group_rational_cuda.cuh,
// which describes them (each dtype compiled by nvcc in its own translation unit). Host code
// only, so the host compiler builds it (nvcc took 55 s for its headers, g++ 19 s).
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "group_rational_cuda.h"

namespace katbench {
namespace {

at::Tensor group_rational_cuda(const at::Tensor& x, const at::Tensor& num, const at::Tensor& den,
                               c10::string_view variant, const std::optional<at::Tensor>& bias) {
  const bool sum_abs = is_sum_abs(variant);
  const Geometry geo = geometry(x, num, den, bias);
  const c10::cuda::CUDAGuard guard(x.device());
  const auto xc = x.contiguous();
  auto y = at::empty_like(xc, at::MemoryFormat::Contiguous);
  if (geo.rows == 0) return y;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, xc.scalar_type(), "group_rational_cuda",
                                  [&] {
    forward_cuda<scalar_t>(xc, y, num, den, bias, geo, sum_abs);
  });
  return y;
}

BackwardResult group_rational_backward_cuda(const at::Tensor& grad_output, const at::Tensor& x,
                                            const at::Tensor& num, const at::Tensor& den,
                                            c10::string_view variant,
                                            const std::optional<at::Tensor>& bias, bool output) {
  const bool sum_abs = is_sum_abs(variant);
  const Geometry geo = geometry(x, num, den, bias);
  const c10::cuda::CUDAGuard guard(x.device());
  const auto xc = x.contiguous();
  const auto gc = grad_output.to(x.scalar_type()).contiguous();
  auto dx = at::empty_like(xc, at::MemoryFormat::Contiguous);
  // Undefined tensors tell the kernel what not to write; empty ones are returned for them.
  at::Tensor y = output ? at::empty_like(xc, at::MemoryFormat::Contiguous) : at::Tensor();
  at::Tensor grad_bias;  // written by backward_cuda where there is a bias
  if (geo.rows > 0) {
    at::Tensor grad_num, grad_den;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, xc.scalar_type(),
                                    "group_rational_backward_cuda", [&] {
      std::tie(grad_num, grad_den) =
          backward_cuda<scalar_t>(gc, xc, dx, y, bias, grad_bias, num, den, geo, sum_abs);
    });
    return backward_result(dx, grad_num.to(num.scalar_type()), grad_den.to(den.scalar_type()),
                           grad_bias, y, bias);
  }
  return backward_result(dx, at::zeros_like(num), at::zeros_like(den), grad_bias, y, bias);
}

}  // namespace

TORCH_LIBRARY_IMPL(katbench, CUDA, m) {
  m.impl("group_rational", &group_rational_cuda);
  m.impl("group_rational_backward", &group_rational_backward_cuda);
}

}  // namespace katbench

