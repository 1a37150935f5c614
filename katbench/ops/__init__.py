"""The one GR-KAN op: ``katbench::group_rational``, registered with ``torch.library``.

The schema is defined here once; kernels come from ``csrc/`` (C++ for CPU, CUDA for GPU, built on
first use, see :mod:`katbench.ops.build`) or, where no toolchain exists, from the pure-PyTorch
reference in :mod:`katbench.ops.reference`. The autograd kernel is C++ when the kernels are
compiled (``csrc/group_rational_autograd.cpp``: no Python runs in a training step), Python
otherwise; the fake (meta) kernels are Python. The op works under
``torch.compile(fullgraph=True)``, ``torch.autocast`` and passes ``torch.library.opcheck``.
First derivatives run the backward kernel; higher derivatives (``create_graph=True``)
differentiate the reference's explicit gradient formulas
(``katbench::group_rational_backward_differentiable``).
"""

from __future__ import annotations

import warnings

import torch

from katbench.ops import build
from katbench.ops.reference import (
    VARIANTS,
    check_arguments,
    group_rational_backward_reference,
    group_rational_gradients_reference,
    group_rational_reference,
)

__all__ = ["VARIANTS", "group_rational", "group_rational_reference", "kernel_backend",
           "load_kernels"]

_LIB = torch.library.Library("katbench", "DEF")
# F(x + bias): the optional per-channel (D,) bias is the one of a linear layer feeding x, added
# here instead of in that layer (its gradient, dx summed over rows, comes from this op's backward).
_LIB.define("group_rational(Tensor x, Tensor numerator, Tensor denominator, str variant, "
            "Tensor? bias=None) -> Tensor")
# (dx, d numerator, d denominator, d bias, F(x + bias)): d bias is empty without a bias; F is
# written only with ``output`` (a layer recomputing its activation in the backward for one
# write), else empty.
_LIB.define(
    "group_rational_backward(Tensor grad_output, Tensor x, Tensor numerator, "
    "Tensor denominator, str variant, Tensor? bias=None, bool output=False) "
    "-> (Tensor, Tensor, Tensor, Tensor, Tensor)"
)
# The reference's gradient formulas as an op the C++ autograd kernel can call for higher
# derivatives: CompositeImplicitAutograd, so autograd records the torch ops inside it.
_LIB.define(
    "group_rational_backward_differentiable(Tensor grad_output, Tensor x, Tensor numerator, "
    "Tensor denominator, str variant, Tensor? bias=None) -> (Tensor, Tensor, Tensor, Tensor)"
)
_LIB.impl("group_rational_backward_differentiable", group_rational_gradients_reference,
          "CompositeImplicitAutograd")
_OPS = ("katbench::group_rational", "katbench::group_rational_backward")
_GROUP_RATIONAL = torch.ops.katbench.group_rational.default
_AUTOCAST_FROM = (torch.float32, torch.float64)
_BACKENDS: dict[str, str] = {}


def _has_kernel(device_type: str) -> bool:
    key = "CUDA" if device_type == "cuda" else "CPU"
    return torch._C._dispatch_has_kernel_for_dispatch_key(_OPS[0], key)


def _register_reference(device_type: str) -> None:
    _LIB.impl("group_rational", group_rational_reference, device_type.upper())
    _LIB.impl("group_rational_backward", group_rational_backward_reference, device_type.upper())


def load_kernels() -> dict[str, str]:
    """Build/load the compiled kernels once; return ``{device_type: "compiled"|"reference"}``.

    Falls back to the reference with one warning when no toolchain exists (``KATBENCH_BACKEND=
    auto``); raises :class:`~katbench.ops.build.ExtensionBuildError` with the compiler's message
    when a build fails, and when ``KATBENCH_BACKEND=compiled`` cannot be honoured.
    """
    if _BACKENDS:
        return _BACKENDS
    backend = build.requested_backend()
    with_cuda = torch.cuda.is_available()
    device_types = ["cpu", "cuda"] if with_cuda else ["cpu"]
    if backend != "reference":
        reason = build.missing_toolchain(with_cuda)
        if reason and with_cuda and build.missing_toolchain(False) is None:
            warnings.warn(f"katbench: {reason}; CUDA tensors use the pure-PyTorch reference",
                          stacklevel=2)
            with_cuda = False
            reason = None
        if reason is None:
            build.compile_and_load(with_cuda)
        elif backend == "compiled":
            raise build.ExtensionBuildError(
                f"KATBENCH_BACKEND=compiled but the kernels cannot be built: {reason}")
        else:
            warnings.warn(f"katbench: {reason}; group_rational falls back to the slower "
                          "pure-PyTorch reference", stacklevel=2)
    for device_type in device_types:
        compiled = _has_kernel(device_type)
        if not compiled:
            _register_reference(device_type)
        _BACKENDS[device_type] = "compiled" if compiled else "reference"
    if not torch._C._dispatch_has_kernel_for_dispatch_key(_OPS[0], "Autograd"):
        torch.library.register_autograd(_OPS[0], _backward, setup_context=_setup_context,
                                        lib=_LIB)
    return _BACKENDS


def kernel_backend(device_type: str = "cpu") -> str:
    """Which implementation serves ``device_type`` tensors: ``"compiled"`` or ``"reference"``."""
    return load_kernels()[device_type]


def group_rational(x: torch.Tensor, numerator: torch.Tensor, denominator: torch.Tensor,
                   variant: str = "sum_abs", bias: torch.Tensor | None = None) -> torch.Tensor:
    """Group-wise safe Padé activation F(x) = P(x) / Q(x) over the last dimension of ``x``.

    ``x`` is ``(..., D)``; ``numerator`` is ``(g, m+1)`` with a_0 first, or ``(1, m+1)``
    shared by all groups (the paper's GR-KAN; its gradient is the sum over groups);
    ``denominator`` is ``(g, n)`` with b_1 first; channel ``i`` uses group ``i // (D // g)``.
    ``variant`` picks Q = 1 + sum_k |b_k||x|^k (``"sum_abs"``) or Q = 1 + |sum_k b_k x^k|
    (``"abs_sum"``). With a ``(D,)`` ``bias`` it is F(x + bias), the bias of the linear layer
    before it moved here (as Megatron's bias-GELU): its gradient is summed in the backward
    kernel, no separate reduction. The
    output has the dtype and shape of ``x``; gradients flow to all tensors. Under
    ``torch.autocast`` a float32/float64 ``x`` is cast to the autocast dtype first (as ``linear``
    casts its input), so the rational and what follows it run in bf16/fp16; the coefficients and
    their gradients stay in their own dtype.
    """
    check_arguments(x, numerator, denominator, variant, bias)
    if not _BACKENDS:
        load_kernels()
    device_type = x.device.type
    if (x.dtype in _AUTOCAST_FROM and device_type in ("cpu", "cuda")
            and torch.is_autocast_enabled(device_type)):
        x = x.to(torch.get_autocast_dtype(device_type))
    return _GROUP_RATIONAL(x, numerator, denominator, variant, bias)


@torch.library.register_fake("katbench::group_rational", lib=_LIB)
def _group_rational_fake(x, numerator, denominator, variant, bias=None):
    return torch.empty_like(x, memory_format=torch.contiguous_format)


@torch.library.register_fake("katbench::group_rational_backward", lib=_LIB)
def _group_rational_backward_fake(grad_output, x, numerator, denominator, variant, bias=None,
                                  output=False):
    dense = torch.empty_like(x, memory_format=torch.contiguous_format)
    return (dense, torch.empty_like(numerator), torch.empty_like(denominator),
            x.new_empty(0) if bias is None else torch.empty_like(bias),
            torch.empty_like(dense) if output else x.new_empty(0))


# The Python autograd, used when no compiled kernels (and so no C++ autograd kernel) are loaded.
def _setup_context(ctx, inputs, output) -> None:
    x, numerator, denominator, variant, bias = inputs
    ctx.save_for_backward(x, numerator, denominator, bias)
    ctx.variant = variant


def _backward(ctx, grad_output):
    x, numerator, denominator, bias = ctx.saved_tensors
    if torch.is_grad_enabled():
        # create_graph=True (higher derivatives, e.g. u'' in a PINN): the explicit gradient
        # formulas in plain torch ops are themselves differentiable.
        grads = group_rational_gradients_reference(grad_output, x, numerator, denominator,
                                                   ctx.variant, bias)
    else:
        grads = torch.ops.katbench.group_rational_backward(grad_output, x, numerator, denominator,
                                                           ctx.variant, bias)
    grad_x, grad_num, grad_den, grad_bias = grads[:4]
    needs = ctx.needs_input_grad
    return (grad_x if needs[0] else None, grad_num if needs[1] else None,
            grad_den if needs[2] else None, None, grad_bias if needs[4] else None)

