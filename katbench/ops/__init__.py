"""The one GR-KAN op: ``katbench::group_rational``, registered with ``torch.library``.

The schema is defined here once; kernels come from one of three backends, chosen per device
type by :func:`load_kernels`: ``compiled`` (``csrc/``: C++ for CPU, CUDA for GPU, built on first
use, see :mod:`katbench.ops.build`), ``triton`` (:mod:`katbench.ops.triton_backend`, for GPUs
without a CUDA toolkit) or ``reference`` (the pure-PyTorch :mod:`katbench.ops.reference`). The
autograd kernel is C++ when the kernels are compiled (``csrc/group_rational_autograd.cpp``: no
Python runs in a training step), Python otherwise; the fake (meta) kernels are Python. The op
works under ``torch.compile(fullgraph=True)``, ``torch.autocast`` and passes
``torch.library.opcheck`` with every backend. First derivatives run the backward kernel; higher
derivatives (``create_graph=True``) differentiate the reference's explicit gradient formulas
(``katbench::group_rational_backward_differentiable``). ``katbench::rational_linear`` is a
rational and the linear map after it in one autograd node that keeps the rational's input, not
its output (``katbench.layers.rational_linear``), built on the same kernels.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator

import torch

from katbench.ops import build
from katbench.ops.reference import (
    VARIANTS,
    check_arguments,
    group_rational_backward_reference,
    group_rational_gradients_reference,
    group_rational_reference,
)

__all__ = ["PYTHON_BACKENDS", "VARIANTS", "autocast_dtype", "group_rational",
           "group_rational_reference", "kernel_backend", "load_kernels", "use_backend"]

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
# linear(F(x + input_bias), weight, bias) keeping x, not F(x), for its backward (GRKANMixer's
# first rational and fc1 at a GELU MLP block's memory; katbench.layers.rational_linear): C++
# forward and autograd kernels with the compiled backend (csrc/rational_linear.cpp), else the
# Python ones below.
_LIB.define(
    "rational_linear(Tensor x, Tensor numerator, Tensor denominator, str variant, "
    "Tensor? input_bias, Tensor weight, Tensor? bias, bool lowest_peak=False) -> Tensor"
)
_OPS = ("katbench::group_rational", "katbench::group_rational_backward")
_RATIONAL_LINEAR = "katbench::rational_linear"
_GROUP_RATIONAL = torch.ops.katbench.group_rational.default
_BACKENDS: dict[str, str] = {}  # device type -> backend serving it


def _has_kernel(device_type: str, op: str = _OPS[0]) -> bool:
    key = "CUDA" if device_type == "cuda" else "CPU"
    return torch._C._dispatch_has_kernel_for_dispatch_key(op, key)


def _python_kernels(backend: str) -> tuple[Callable, Callable]:
    """(forward, backward) of a backend written in Python: ``triton`` or ``reference``."""
    if backend == "triton":
        from katbench.ops import triton_backend
        return (triton_backend.group_rational_triton,
                triton_backend.group_rational_backward_triton)
    return group_rational_reference, group_rational_backward_reference


# The CPU/CUDA kernels of the Python backends: each call runs the backend that _BACKENDS names
# for its device type (so that use_backend can switch it without registering again).
def _forward(x, numerator, denominator, variant, bias=None):
    return _python_kernels(_BACKENDS[x.device.type])[0](x, numerator, denominator, variant, bias)


def _backward(grad_output, x, numerator, denominator, variant, bias=None, output=False):
    return _python_kernels(_BACKENDS[x.device.type])[1](grad_output, x, numerator, denominator,
                                                        variant, bias, output)


def _register_python(lib: torch.library.Library, device_type: str) -> None:
    lib.impl("group_rational", _forward, device_type.upper())
    lib.impl("group_rational_backward", _backward, device_type.upper())


def _triton_missing() -> str | None:
    """Why the Triton kernels cannot run CUDA tensors here, or None."""
    try:
        _python_kernels("triton")
    except ImportError as error:
        return f"Triton does not import ({error})"
    return None


def _triton_interpreted() -> bool:
    """Whether Triton runs CPU tensors here (its interpreter, TRITON_INTERPRET=1)."""
    if _triton_missing() is not None:
        return False
    from katbench.ops import triton_backend
    return triton_backend.INTERPRETED


def _compile(requested: str, with_cuda: bool) -> str | None:
    """Build/load the compiled kernels where a toolchain exists (CPU only without a CUDA
    toolkit); return why some device type cannot have them, or None."""
    reason = build.missing_toolchain(with_cuda)
    if reason and with_cuda and build.missing_toolchain(False) is None:
        build.compile_and_load(False)
        return reason
    if reason is None:
        build.compile_and_load(with_cuda)
    elif requested == "compiled":
        raise build.ExtensionBuildError(
            f"KATBENCH_BACKEND=compiled but the kernels cannot be built: {reason}")
    return reason


def _fallback(requested: str, device_type: str) -> str:
    """The backend of ``device_type`` tensors without compiled kernels."""
    if requested == "reference":
        return "reference"
    if device_type == "cuda" or requested == "triton":
        missing = _triton_missing()
        if requested == "triton" and missing:
            raise RuntimeError(f"KATBENCH_BACKEND=triton but {missing}; install triton (it "
                               "ships with torch's CUDA wheels) or choose another backend")
        if device_type == "cuda" and missing is None:
            return "triton"
        if device_type == "cpu" and _triton_interpreted():
            return "triton"
    return "reference"


_DESCRIPTIONS = {"triton": "the Triton kernels", "reference": "the slower pure-PyTorch reference"}
# The backends :func:`use_backend` can switch a device type to.
PYTHON_BACKENDS = tuple(_DESCRIPTIONS)


def load_kernels() -> dict[str, str]:
    """Load the kernels once; return ``{device_type: "compiled"|"triton"|"reference"}``.

    ``KATBENCH_BACKEND`` (:func:`~katbench.ops.build.requested_backend`): ``auto`` uses the
    compiled kernels where a C++ compiler (and for CUDA a CUDA toolkit) exists, else for CUDA
    tensors Triton where it imports, else the reference, with one warning naming the choice and
    why; ``compiled`` raises :class:`~katbench.ops.build.ExtensionBuildError` when no C++
    compiler exists (CUDA tensors without a toolkit fall back as under ``auto``); ``triton``
    builds nothing: Triton for CUDA tensors (CPU tensors under ``TRITON_INTERPRET=1``), the
    reference for CPU tensors; ``reference`` runs the reference everywhere. A failing build
    raises with the compiler's message.
    """
    if _BACKENDS:
        return _BACKENDS
    requested = build.requested_backend()
    with_cuda = torch.cuda.is_available()
    reason = _compile(requested, with_cuda) if requested in ("auto", "compiled") else None
    fallbacks = []
    for device_type in ("cpu", "cuda") if with_cuda else ("cpu",):
        if _has_kernel(device_type):
            _BACKENDS[device_type] = "compiled"
            continue
        _BACKENDS[device_type] = backend = _fallback(requested, device_type)
        _register_python(_LIB, device_type)
        fallbacks.append(f"{device_type.upper()} tensors use {_DESCRIPTIONS[backend]}")
    if reason and fallbacks:
        warnings.warn(f"katbench: {reason}; group_rational: {', '.join(fallbacks)}",
                      stacklevel=2)
    if not torch._C._dispatch_has_kernel_for_dispatch_key(_OPS[0], "Autograd"):
        torch.library.register_autograd(_OPS[0], _autograd_backward,
                                        setup_context=_setup_context, lib=_LIB)
    _register_rational_linear(_BACKENDS)
    return _BACKENDS


def kernel_backend(device_type: str = "cpu") -> str:
    """Which backend serves ``device_type`` tensors: ``"compiled"``, ``"triton"`` or
    ``"reference"``."""
    return load_kernels()[device_type]


@contextlib.contextmanager
def use_backend(backend: str, device_type: str) -> Iterator[None]:
    """Serve ``device_type`` tensors with ``backend`` (``"triton"`` or ``"reference"``) inside
    the block, then restore the loaded one: the benchmarks' side-by-side rows and the tests.

    Same op, autograd and fake kernels; only the CPU/CUDA kernel changes. Triton serves CPU
    tensors only under ``TRITON_INTERPRET=1``.
    """
    if backend not in PYTHON_BACKENDS:
        raise ValueError(f"use_backend: {backend!r} is not one of {PYTHON_BACKENDS}")
    if backend == "triton" and (_triton_missing() or (device_type == "cpu"
                                                      and not _triton_interpreted())):
        raise RuntimeError(f"use_backend: Triton cannot serve {device_type} tensors here: "
                           f"{_triton_missing() or 'CPU tensors need TRITON_INTERPRET=1'}")
    if device_type not in load_kernels():
        raise ValueError(f"use_backend: no {device_type} device here (have {tuple(_BACKENDS)})")
    previous = _BACKENDS[device_type]
    with contextlib.ExitStack() as stack:
        if previous == "compiled":  # a Python kernel over the C++ one, removed on exit
            lib = stack.enter_context(torch.library._scoped_library("katbench", "IMPL"))
            with warnings.catch_warnings():  # the dispatcher's "overriding a kernel" warning
                warnings.simplefilter("ignore")
                _register_python(lib, device_type)
        _BACKENDS[device_type] = backend
        try:
            yield
        finally:
            _BACKENDS[device_type] = previous


def autocast_dtype(x: torch.Tensor) -> torch.dtype | None:
    """The dtype autocast gives ``x`` on its way into a ``linear`` (the autocast dtype for any
    floating dtype but float64, under an enabled autocast of its device type), or None where
    autocast leaves it (float64, or no autocast): what the op and the fused rational-linear
    cast their inputs (and the linear's weight) to."""
    device_type = x.device.type
    if (x.is_floating_point() and x.dtype != torch.float64 and device_type in ("cpu", "cuda")
            and torch.is_autocast_enabled(device_type)):
        return torch.get_autocast_dtype(device_type)
    return None


def group_rational(x: torch.Tensor, numerator: torch.Tensor, denominator: torch.Tensor,
                   variant: str = "sum_abs", bias: torch.Tensor | None = None) -> torch.Tensor:
    """Group-wise safe Padé activation F(x) = P(x) / Q(x) over the last dimension of ``x``.

    ``x`` is ``(..., D)``; ``numerator`` is ``(g, m+1)`` with a_0 first, or ``(1, m+1)``
    shared by all groups (the paper's GR-KAN; its gradient is the sum over groups);
    ``denominator`` is ``(g, n)`` with b_1 first; channel ``i`` uses group ``i // (D // g)``.
    ``variant`` picks Q = 1 + sum_k |b_k||x|^k (``"sum_abs"``) or Q = 1 + |sum_k b_k x^k|
    (``"abs_sum"``). With a ``(D,)`` ``bias`` it is F(x + bias), the bias of the linear layer
    before it moved here (as Megatron's bias-GELU): its gradient is summed in the backward
    kernel, no separate reduction. The output has the dtype and shape of ``x``; gradients flow
    to all tensors. Under ``torch.autocast`` ``x`` is cast to the autocast dtype first, as
    ``linear`` casts its input (:func:`autocast_dtype`): the rational and what follows it run in
    bf16/fp16, a float64 ``x`` stays float64 (a float64 PINN on a GPU with autocast on); the
    coefficients and their gradients stay in their own dtype.
    """
    check_arguments(x, numerator, denominator, variant, bias)
    if not _BACKENDS:
        load_kernels()
    dtype = autocast_dtype(x)
    if dtype is not None:
        x = x.to(dtype)
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


# The Python autograd, used when no compiled kernels (and so no C++ autograd kernel) are loaded;
# like the C++ one, the backward kernel for first derivatives and the differentiable formulas for
# higher ones, whatever backend serves the device type.
def _setup_context(ctx, inputs, output) -> None:
    x, numerator, denominator, variant, bias = inputs
    ctx.save_for_backward(x, numerator, denominator, bias)
    ctx.variant = variant


def _autograd_backward(ctx, grad_output):
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
    # one gradient per input the op was called with (x, numerator, denominator, variant and, when
    # passed, bias): a call without a bias has four
    return tuple(grad if needed else None for grad, needed in zip(
        (grad_x, grad_num, grad_den, None, grad_bias), ctx.needs_input_grad, strict=False))


@torch.library.register_fake(_RATIONAL_LINEAR, lib=_LIB)
def _rational_linear_fake(x, numerator, denominator, variant, input_bias, weight, bias,
                          lowest_peak=False):
    return x.new_empty((*x.shape[:-1], weight.shape[0]))


def _rows(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1, t.shape[-1])


# katbench::rational_linear in Python, for device types without the compiled kernels (and so
# without csrc/rational_linear.cpp): the same forward and backward as the C++ kernels.
def _rational_linear_forward(x, numerator, denominator, variant, input_bias, weight, bias,
                             lowest_peak=False):
    return torch.nn.functional.linear(_GROUP_RATIONAL(x, numerator, denominator, variant,
                                                      input_bias), weight, bias)


def _rational_linear_setup(ctx, inputs, output) -> None:
    x, numerator, denominator, variant, input_bias, weight, bias, lowest_peak = inputs
    ctx.save_for_backward(x, numerator, denominator, input_bias, weight)
    ctx.variant, ctx.has_bias, ctx.lowest_peak = variant, bias is not None, lowest_peak


def _rational_linear_backward(ctx, grad_output):
    x, numerator, denominator, input_bias, weight = ctx.saved_tensors
    args = (x, numerator, denominator, ctx.variant, input_bias)
    grad_rows, grad_f = _rows(grad_output), grad_output @ weight
    if torch.is_grad_enabled():  # create_graph=True: differentiable formulas
        grad_x, grad_num, grad_den, grad_input_bias = group_rational_gradients_reference(
            grad_f, *args)
        grad_weight = grad_rows.t() @ _rows(_GROUP_RATIONAL(*args))
    else:
        grad_weight = None
        if ctx.lowest_peak:  # F(x) recomputed and freed before the backward kernel runs
            grad_weight = grad_rows.t() @ _rows(_GROUP_RATIONAL(*args))
        grad_x, grad_num, grad_den, grad_input_bias, rational = (
            torch.ops.katbench.group_rational_backward(grad_f, *args, not ctx.lowest_peak))
        if grad_weight is None:
            grad_weight = grad_rows.t() @ _rows(rational)
    grad_bias = grad_rows.sum(0) if ctx.has_bias else None
    # one gradient per input the op was called with (lowest_peak may be left to its default)
    return tuple(grad if needed else None for grad, needed in zip(
        (grad_x, grad_num, grad_den, None, grad_input_bias, grad_weight, grad_bias, None),
        ctx.needs_input_grad, strict=False))


def _register_rational_linear(backends: dict[str, str]) -> None:
    """The Python kernels of katbench::rational_linear where the C++ ones are not loaded."""
    for device_type in backends:
        if not _has_kernel(device_type, _RATIONAL_LINEAR):
            _LIB.impl("rational_linear", _rational_linear_forward, device_type.upper())
    if not torch._C._dispatch_has_kernel_for_dispatch_key(_RATIONAL_LINEAR, "Autograd"):
        torch.library.register_autograd(_RATIONAL_LINEAR, _rational_linear_backward,
                                        setup_context=_rational_linear_setup, lib=_LIB)
