"""The group_rational kernels against the pure-PyTorch reference, on CPU and CUDA.

Tests taking the ``backend`` fixture (tests/ops/conftest.py) run twice: with the loaded backend
(the compiled kernels in CI) and with the Triton kernels (on CPU under Triton's interpreter).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from katbench.ops import VARIANTS, group_rational, kernel_backend, load_kernels
from katbench.ops.reference import (
    group_rational_backward_reference,
    group_rational_gradients_reference,
    group_rational_reference,
)

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]
ORDERS = [(5, 4), (3, 2), (8, 8), (0, 1), (6, 1)]


def skip_without(device: str) -> None:
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs CUDA")


def coefficients(groups: int, order: tuple[int, int], device: str = "cpu",
                 dtype: torch.dtype = torch.float32, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    m, n = order
    num = torch.randn(groups, m + 1, generator=gen, dtype=torch.float64) / (1 + torch.arange(m + 1))
    den = torch.randn(groups, n, generator=gen, dtype=torch.float64) / (1 + torch.arange(n))
    return num.to(device, dtype), den.to(device, dtype)


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    scale = expected.double().abs().max().clamp_min(1e-12)
    return ((actual.double() - expected.double()).abs().max() / scale).item()


def test_compiled_backend_is_used_when_required():
    """CI sets KATBENCH_BACKEND=compiled: the C++ kernel must be built, never skipped."""
    backends = load_kernels()
    if os.environ.get("KATBENCH_BACKEND") == "compiled":
        assert backends["cpu"] == "compiled"
        assert torch._C._dispatch_has_kernel_for_dispatch_key(
            "katbench::group_rational", "CPU")
    assert kernel_backend("cpu") in ("compiled", "triton", "reference")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("order", ORDERS)
def test_forward_and_backward_match_reference_float64(device, variant, order, backend):
    skip_without(device)
    num, den = coefficients(4, order, device, torch.float64)
    x = torch.randn(5, 3, 32, dtype=torch.float64, device=device) * 2
    grad = torch.randn_like(x)
    expected = group_rational_reference(x, num, den, variant)
    torch.testing.assert_close(group_rational(x, num, den, variant), expected,
                               rtol=1e-12, atol=1e-12)
    bias = torch.randn(32, dtype=torch.float64, device=device)
    actual = torch.ops.katbench.group_rational_backward(grad, x, num, den, variant, bias, True)
    reference = group_rational_backward_reference(grad, x, num, den, variant, bias, True)
    for a, r in zip(actual, reference, strict=True):
        assert relative_error(a, r) < 1e-12
    torch.testing.assert_close(actual[3], actual[0].reshape(-1, 32).sum(0))  # bias gradient
    torch.testing.assert_close(actual[4], group_rational(x + bias, num, den, variant),
                               rtol=1e-12, atol=1e-12)  # F(x + bias)


TOLERANCES = {torch.float32: 2e-5, torch.bfloat16: 1e-2, torch.float16: 2e-3}


def with_triton(loaded: list[tuple], triton: list[tuple]) -> list[tuple]:
    """Parameter sets prefixed by the ``backend`` fixture's value: all of ``loaded``, and the
    fewer of ``triton`` (a CPU launch under Triton's interpreter takes tenths of a second)."""
    return [("loaded", *p) for p in loaded] + [("triton", *p) for p in triton]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend,dtype,with_bias,output", with_triton(
    [(d, b, o) for d in TOLERANCES for b, o in [(True, False), (False, True), (True, True)]],
    [(torch.float32, True, False), (torch.bfloat16, True, True), (torch.float16, False, True)]),
    indirect=["backend"])
def test_input_bias_and_written_output(device, backend, dtype, with_bias, output):
    """F(x + bias) forward and backward (the bias gradient, summed by the backward kernel) match
    the reference; F written by the backward on request matches the forward; the gradients are
    those of x + bias, and what was not asked for comes back empty."""
    skip_without(device)
    tolerance = TOLERANCES[dtype]
    num, den = coefficients(8, (5, 4), device)
    x = (torch.randn(3, 77, 128, device=device) * 1.5).to(dtype)
    bias = torch.randn(128, device=device) if with_bias else None
    grad = torch.randn_like(x)
    shifted = (x.float() + bias).to(dtype) if with_bias else x
    reference = group_rational_backward_reference(
        grad.double(), x.double(), num[:1].double(), den.double(),
        bias=None if bias is None else bias.double(), output=True)
    y = group_rational(x, num[:1], den, bias=bias)
    assert y.dtype == dtype and relative_error(y, reference[4]) < tolerance
    fused = torch.ops.katbench.group_rational_backward(grad, x, num[:1], den, "sum_abs", bias,
                                                       output)
    for actual, expected in zip(fused[:3], reference[:3], strict=True):
        assert relative_error(actual, expected) < tolerance * 10
    plain = torch.ops.katbench.group_rational_backward(grad, shifted, num[:1], den, "sum_abs")
    assert plain[3].numel() == plain[4].numel() == 0
    if with_bias:
        assert fused[3].dtype == torch.float32 and fused[3].shape == (128,)
        assert relative_error(fused[3], reference[3]) < tolerance * 10
    else:
        for a, b in zip(plain[:3], fused[:3], strict=True):  # the fused kernel, same numbers
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
        assert fused[3].numel() == 0
    if output:
        assert fused[4].dtype == dtype and fused[4].shape == x.shape
        assert relative_error(fused[4], y) < tolerance
    else:
        assert fused[4].numel() == 0


@pytest.mark.parametrize("device", DEVICES)
def test_bias_gradient_through_autograd(device, backend):
    """gradcheck of F(x + bias) in every argument (CPU float64; CUDA float64 kernels)."""
    skip_without(device)
    num, den = coefficients(2, (5, 4), device, torch.float64)
    x = torch.randn(3, 8, dtype=torch.float64, device=device, requires_grad=True)
    bias = torch.randn(8, dtype=torch.float64, device=device, requires_grad=True)
    fast = backend == "triton"  # a launch under Triton's interpreter takes milliseconds
    assert torch.autograd.gradcheck(
        lambda x_, a_, b_, c_: group_rational(x_, a_, b_, bias=c_),
        (x, num.requires_grad_(), den.requires_grad_(), bias), fast_mode=fast)
    assert torch.autograd.gradgradcheck(
        lambda x_, c_: group_rational(x_, num, den, bias=c_), (x, bias), fast_mode=fast)


def test_bad_bias_is_rejected_naming_the_shape():
    num, den = coefficients(2, (5, 4))
    with pytest.raises(ValueError, match=r"bias must be a floating-point \(8,\) tensor"):
        group_rational(torch.randn(3, 8), num, den, bias=torch.randn(4))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype,tolerance", [(torch.float32, 2e-5), (torch.bfloat16, 1e-2),
                                             (torch.float16, 2e-3)])
def test_reduced_precision_matches_reference(device, variant, dtype, tolerance, backend):
    skip_without(device)
    num, den = coefficients(8, (5, 4), device)
    x = (torch.randn(4, 33, 64, device=device) * 1.5).to(dtype).requires_grad_()
    y = group_rational(x, num.requires_grad_(), den.requires_grad_(), variant)
    assert y.dtype == dtype and y.shape == x.shape
    expected = group_rational_reference(x.detach().double(), num.detach(), den.detach(), variant)
    assert relative_error(y, expected) < tolerance
    grad = torch.randn_like(y)
    y.backward(grad)
    reference = group_rational_gradients_reference(grad, x.detach().double(), num.detach(),
                                                   den.detach(), variant)
    assert x.grad.dtype == dtype and num.grad.dtype == torch.float32
    for actual, r in zip((x.grad, num.grad, den.grad), reference[:3], strict=True):
        assert relative_error(actual, r) < tolerance * 10


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("order", [(5, 4), (2, 3)])
def test_gradcheck_float64(variant, order, backend):
    num, den = coefficients(2, order, dtype=torch.float64)
    x = torch.randn(3, 8, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda x_, a_, b_: group_rational(x_, a_, b_, variant),
        (x, num.requires_grad_(), den.requires_grad_()), fast_mode=backend == "triton")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend,variant,with_bias", with_triton(
    [(v, b) for v in VARIANTS for b in (False, True)], [("sum_abs", False), ("abs_sum", True)]),
    indirect=["backend"])
def test_opcheck(device, backend, variant, with_bias):
    skip_without(device)
    load_kernels()
    num, den = coefficients(4, (5, 4), device)
    x = torch.randn(6, 16, device=device, requires_grad=True)
    bias = torch.randn(16, device=device, requires_grad=True) if with_bias else None
    torch.library.opcheck(torch.ops.katbench.group_rational.default,
                          (x, num.requires_grad_(), den.requires_grad_(), variant, bias))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape,groups", [
    ((16,), 4),            # a single channel vector
    ((2, 3, 5, 24), 8),    # 4-D channels-last
    ((7, 12), 1),          # one group
    ((7, 12), 12),         # a group per channel
    ((0, 16), 4),          # empty
    ((3, 10), 5),          # group width 2: the unvectorised path
])
def test_shapes(device, shape, groups, backend):
    skip_without(device)
    num, den = coefficients(groups, (5, 4), device)
    x = torch.randn(*shape, device=device, requires_grad=True)
    y = group_rational(x, num.requires_grad_(), den.requires_grad_())
    assert y.shape == x.shape
    torch.testing.assert_close(y, group_rational_reference(x.detach(), num.detach(),
                                                           den.detach()), rtol=1e-5, atol=1e-5)
    y.sum().backward()
    assert x.grad.shape == x.shape and num.grad.shape == num.shape
    if x.numel() == 0:
        assert not num.grad.any() and not den.grad.any()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend,variant,dtype", with_triton(
    [(v, d) for v in VARIANTS for d in (torch.float32, torch.bfloat16, torch.float64)],
    [("sum_abs", torch.float32), ("abs_sum", torch.bfloat16)]), indirect=["backend"])
@pytest.mark.parametrize("shape,groups", [
    ((64, 512), 8),        # the usual case: each group inside one CUDA block
    ((40, 192), 8),        # group width 24: groups split across CUDA blocks
    ((9, 2048), 8),        # many blocks along the width
    ((33, 30), 5),         # group width 6: the unvectorised path
    ((17, 48), 48),        # a group per channel
    ((5, 16), 1),          # one group
])
def test_shared_numerator_row_matches_expanded_numerator(device, backend, variant, dtype, shape,
                                                         groups):
    """A (1, m+1) numerator serves every group; its gradient is the sum over the groups'."""
    skip_without(device)
    num, den = coefficients(groups, (5, 4), device)
    shared = num[:1].clone().requires_grad_()
    expanded = num[:1].expand(groups, -1).clone().requires_grad_()
    den_shared, den_expanded = den.clone().requires_grad_(), den.clone().requires_grad_()
    x = (torch.randn(*shape, device=device) * 1.5).to(dtype)
    x_shared, x_expanded = x.clone().requires_grad_(), x.clone().requires_grad_()
    grad = torch.randn_like(x)
    y = group_rational(x_shared, shared, den_shared, variant)
    torch.testing.assert_close(y, group_rational(x_expanded, expanded, den_expanded, variant),
                               rtol=0, atol=0)
    y.backward(grad)
    group_rational(x_expanded, expanded, den_expanded, variant).backward(grad)
    assert shared.grad.shape == (1, 6)
    torch.testing.assert_close(x_shared.grad, x_expanded.grad, rtol=0, atol=0)
    torch.testing.assert_close(den_shared.grad, den_expanded.grad, rtol=0, atol=0)
    torch.testing.assert_close(shared.grad, expanded.grad.sum(0, keepdim=True),
                               rtol=1e-5, atol=1e-5 * expanded.grad.abs().max().item())
    reference = group_rational_backward_reference(grad.double(), x.double(), num[:1].double(),
                                                  den.double(), variant)[1]
    assert relative_error(shared.grad, reference) < (1e-4 if dtype == torch.float32 else 1e-2)


@pytest.mark.parametrize("device", DEVICES)
def test_non_contiguous_input(device, backend):
    skip_without(device)
    num, den = coefficients(4, (5, 4), device)
    base = torch.randn(32, 10, device=device)
    x = base.t()  # (10, 32), non-contiguous
    assert not x.is_contiguous()
    torch.testing.assert_close(group_rational(x, num, den),
                               group_rational_reference(x, num, den), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("order", [(5, 4), (8, 8)])
@pytest.mark.kernels
# Triton's interpreter warns of the float32 overflow in the results the kernels discard.
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_huge_inputs_stay_finite(device, variant, order, backend):
    skip_without(device)
    num, den = coefficients(2, order, device)
    x = torch.tensor([[-1e30, -1e20, -5e4, 5e3, 1e10, 1e30, 0.0, 1e-30]], device=device,
                     requires_grad=True)
    y = group_rational(x, num.requires_grad_(), den.requires_grad_(), variant)
    y.sum().backward()
    assert torch.isfinite(y).all()
    expected = group_rational_reference(x.detach().double(), num.detach(), den.detach(), variant)
    torch.testing.assert_close(y, expected.float(), rtol=1e-5, atol=0)
    assert torch.isfinite(x.grad).all()


def test_deterministic_coefficient_gradients():
    num, den = coefficients(8, (5, 4))
    x = torch.randn(64, 97, 128)
    grad = torch.randn_like(x)
    bias = torch.randn(128)
    first = torch.ops.katbench.group_rational_backward(grad, x, num, den, "sum_abs", bias, True)
    torch.set_num_threads(1)
    try:
        second = torch.ops.katbench.group_rational_backward(grad, x, num, den, "sum_abs", bias,
                                                            True)
    finally:
        torch.set_num_threads(os.cpu_count() or 1)
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("device", DEVICES)
def test_gradients_are_bitwise_stable(device, backend):
    """Three backward runs give bitwise equal outputs (no atomics: partial sums added in a fixed
    order), per-group and shared numerators, with a bias and the written F(x)."""
    skip_without(device)
    num, den = coefficients(8, (5, 4), device)
    x = torch.randn(64, 1000, 512, device=device) if device == "cuda" else torch.randn(5, 9, 64)
    grad = torch.randn_like(x)
    bias = torch.randn(x.shape[-1], device=device)
    for numerator in (num, num[:1]):  # per-group and shared numerator
        runs = [torch.ops.katbench.group_rational_backward(grad, x, numerator, den, "sum_abs",
                                                           bias, True)
                for _ in range(3)]
        for run in runs[1:]:
            for a, b in zip(runs[0], run, strict=True):
                assert torch.equal(a, b)


@pytest.mark.parametrize("make,match", [
    (lambda: (torch.randn(4, 10), *coefficients(4, (5, 4))), "D=10 is not divisible by g=4"),
    (lambda: (torch.randn(4, 8), torch.randn(6), torch.randn(2, 4)), "numerator must be"),
    (lambda: (torch.randn(4, 8), torch.randn(2, 6), torch.randn(4, 4)), "2 groups"),
    (lambda: (torch.randn(4, 8), torch.randn(2, 10), torch.randn(2, 4)), "m=9"),
    (lambda: (torch.randn(4, 8), torch.randn(2, 6), torch.randn(2, 9)), "n=9"),
    (lambda: (torch.tensor(1.0), *coefficients(1, (5, 4))), "at least one dimension"),
])
def test_bad_shapes_raise_value_error(make, match):
    x, num, den = make()
    with pytest.raises(ValueError, match=match):
        group_rational(x, num, den)


@pytest.mark.kernels
def test_kernel_argument_errors_raise_instead_of_crashing():
    """A check inside the compiled kernels (the op called directly, below the Python checks)
    surfaces as a RuntimeError. In a subprocess, so that a crash fails this test only."""
    code = textwrap.dedent("""
        import torch
        from katbench.ops import load_kernels
        load_kernels()
        x = torch.randn(4, 10)
        try:
            torch.ops.katbench.group_rational_backward(x, x, torch.randn(4, 6),
                                                       torch.randn(4, 4), "sum_abs")
        except RuntimeError as error:
            print("raised:", error)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr[-2000:]}"
    assert "width D=10 is not divisible by g=4" in result.stdout


def test_bad_dtype_and_variant_raise():
    num, den = coefficients(2, (5, 4))
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        group_rational(torch.ones(2, 4, dtype=torch.long), num, den)
    with pytest.raises(ValueError, match="unknown variant 'abs'"):
        group_rational(torch.ones(2, 4), num, den, "abs")


def test_torch_compile_fullgraph_matches_eager(backend):
    num, den = coefficients(4, (5, 4))
    x = torch.randn(8, 16)

    def block(x_):
        return group_rational(x_ * 2, num, den).sum(-1)

    compiled = torch.compile(block, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x), block(x))


def test_autocast_casts_float32_input_to_the_autocast_dtype(backend):
    num, den = coefficients(4, (5, 4))
    linear = torch.nn.Linear(16, 16)
    x = torch.randn(8, 16, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        first = group_rational(x, num.requires_grad_(), den.requires_grad_())  # float32 input
        y = group_rational(linear(first), num, den)
    assert first.dtype == y.dtype == torch.bfloat16
    torch.testing.assert_close(first, group_rational(x.bfloat16(), num, den))
    y.float().sum().backward()
    assert num.grad.dtype == torch.float32 and x.grad.dtype == torch.float32
    assert torch.isfinite(x.grad).all()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=False):
        assert group_rational(x, num, den).dtype == torch.float32


def test_autocast_leaves_float64_input_alone(backend):
    """As ``linear`` under autocast: a float64 model (the PINN) stays float64 end to end, second
    derivatives included (a bf16 cast broke the PINN's next float64 layer on the GPU)."""
    num, den = coefficients(1, (5, 4), dtype=torch.float64)
    linear = torch.nn.Linear(8, 8, dtype=torch.float64)
    t = torch.linspace(-2, 2, 8, dtype=torch.float64).unsqueeze(0).requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        u = linear(group_rational(t, num, den))
        (du,) = torch.autograd.grad(u.sum(), t, create_graph=True)
        (d2u,) = torch.autograd.grad(du.sum(), t)
    assert u.dtype == du.dtype == d2u.dtype == torch.float64
    (expected,) = torch.autograd.grad(linear(group_rational_reference(t, num, den)).sum(), t)
    torch.testing.assert_close(du, expected)


@pytest.mark.parametrize("device", DEVICES)
def test_zero_denominator_coefficients_still_get_gradients(device, backend):
    """d|b|/db is +1 at b = 0 (sum_abs), so exact-zero initialisations can learn."""
    skip_without(device)
    num = torch.tensor([[0.0, 1.0, 0.0, 0.0, 0.0, 0.0]], device=device, requires_grad=True)
    den = torch.zeros(1, 4, device=device, requires_grad=True)
    x = torch.randn(32, 8, device=device)
    y = group_rational(x, num, den, "sum_abs")
    torch.testing.assert_close(y, x)  # identity
    (y * x).sum().backward()
    assert (den.grad != 0).all()
    expected = group_rational_backward_reference(torch.ones_like(x) * x, x, num.detach(),
                                                 den.detach(), "sum_abs")[2]
    torch.testing.assert_close(den.grad, expected)


@pytest.mark.parametrize("variant", VARIANTS)
def test_second_derivatives_gradgradcheck(variant, backend):
    """create_graph=True works (PINN residuals need u''), via the differentiable formulas."""
    num, den = coefficients(2, (5, 4), dtype=torch.float64)
    x = torch.randn(3, 8, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradgradcheck(
        lambda x_, a_, b_: group_rational(x_, a_, b_, variant),
        (x, num.requires_grad_(), den.requires_grad_()), fast_mode=backend == "triton")


def test_second_derivative_in_x_matches_reference(backend):
    num, den = coefficients(1, (5, 4), dtype=torch.float64)
    t = torch.linspace(-2, 2, 50, dtype=torch.float64).unsqueeze(-1).requires_grad_()
    results = []
    for fn in (group_rational, group_rational_reference):
        u = fn(t, num, den, "sum_abs")
        (du,) = torch.autograd.grad(u.sum(), t, create_graph=True)
        (d2u,) = torch.autograd.grad(du.sum(), t)
        results.append(d2u)
    torch.testing.assert_close(results[0], results[1])


@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_persistent_triton_forward_matches_one_program_per_tile(monkeypatch, with_bias):
    """A persistent forward grid (each program looping over row tiles, coefficients loaded once)
    writes what one program per tile writes, large-input tiles included."""
    if os.environ.get("TRITON_INTERPRET") != "1" and not torch.cuda.is_available():
        pytest.skip("needs Triton's interpreter or a CUDA GPU")
    from katbench.ops import triton_backend

    device = "cuda" if torch.cuda.is_available() else "cpu"
    num, den = coefficients(4, (5, 4), device)
    x = torch.randn(37, 64, device=device)
    x[20, 5] = 1e20                                   # one tile takes the large-input path
    bias = torch.randn(64, device=device) if with_bias else None
    per_tile = triton_backend.group_rational_triton(x, num, den, "sum_abs", bias)
    monkeypatch.setattr(triton_backend, "FORWARD_PROGRAMS_PER_SM", 2)
    persistent = triton_backend.group_rational_triton(x, num, den, "sum_abs", bias)
    assert torch.equal(persistent, per_tile)
    expected = group_rational_reference(x.double(), num.double(), den.double(), "sum_abs",
                                        None if bias is None else bias.double())
    torch.testing.assert_close(persistent, expected.float(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("with_bias", [False, True])
def test_triton_kernels_without_the_large_input_test_agree_on_ordinary_inputs(monkeypatch,
                                                                           with_bias):
    """``LARGE_INPUT_CHECK=False`` (the sweep's probe of what the tile-wide |x| > 4096 test
    costs) changes nothing where no input is large: forward, backward and written F."""
    if os.environ.get("TRITON_INTERPRET") != "1" and not torch.cuda.is_available():
        pytest.skip("needs Triton's interpreter or a CUDA GPU")
    from katbench.ops import triton_backend

    device = "cuda" if torch.cuda.is_available() else "cpu"
    num, den = coefficients(4, (5, 4), device)
    x, grad = torch.randn(2, 37, 64, device=device).unbind()
    bias = torch.randn(64, device=device) if with_bias else None
    checked = (triton_backend.group_rational_triton(x, num, den, "sum_abs", bias),
               *triton_backend.group_rational_backward_triton(grad, x, num, den, "sum_abs",
                                                              bias, True))
    monkeypatch.setattr(triton_backend, "LARGE_INPUT_CHECK", False)
    unchecked = (triton_backend.group_rational_triton(x, num, den, "sum_abs", bias),
                 *triton_backend.group_rational_backward_triton(grad, x, num, den, "sum_abs",
                                                                bias, True))
    for a, b in zip(checked, unchecked, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("shared_numerator", [False, True])
@pytest.mark.parametrize("with_bias", [False, True])
def test_triton_reduction_over_many_programs_in_small_steps(monkeypatch, shared_numerator,
                                                             with_bias):
    """The backward's reduction with many partials per coefficient, summed a few at a time (a
    GPU's grid: dozens of programs; here 12, in steps of 16 partials and 4 programs): the
    gradients of the float64 reference."""
    if os.environ.get("TRITON_INTERPRET") != "1" and not torch.cuda.is_available():
        pytest.skip("needs Triton's interpreter or a CUDA GPU")
    from katbench.ops import triton_backend

    device = "cuda" if torch.cuda.is_available() else "cpu"
    monkeypatch.setattr(triton_backend, "_multiprocessors", lambda _: 6)    # 12 programs
    monkeypatch.setattr(triton_backend, "REDUCE_BLOCK", 16)
    monkeypatch.setattr(triton_backend, "BIAS_REDUCE_ROWS", 4)
    monkeypatch.setattr(triton_backend, "BIAS_REDUCE_BLOCK", 16)
    num, den = coefficients(4, (5, 4), device)
    if shared_numerator:
        num = num[:1]
    x, grad = torch.randn(2, 400, 40, device=device, dtype=torch.float64).unbind()
    bias = torch.randn(40, device=device, dtype=torch.float64) if with_bias else None
    dx, d_num, d_den, d_bias, _ = triton_backend.group_rational_backward_triton(
        grad, x, num.double(), den.double(), "sum_abs", bias)
    inputs = [t.detach().clone().requires_grad_() for t in (x, num.double(), den.double())]
    shift = None if bias is None else bias.detach().clone().requires_grad_()
    group_rational_reference(*inputs, "sum_abs", shift).backward(grad)
    for ours, reference in zip((dx, d_num, d_den), inputs, strict=True):
        torch.testing.assert_close(ours, reference.grad)
    if with_bias:
        torch.testing.assert_close(d_bias, shift.grad)
