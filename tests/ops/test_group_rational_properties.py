"""Property-based checks of group_rational over shapes, dtypes, orders and extreme values."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from katbench.ops import VARIANTS, group_rational
from katbench.ops.reference import group_rational_reference

DTYPES = [torch.float32, torch.float64, torch.bfloat16]


@st.composite
def problems(draw):
    """Random (x, numerator, denominator, variant) whose true output is representable.

    Orders keep m <= n + 1 and |b_n| >= 0.1, so F(x) grows at most like x / |b_n|: any finite
    input up to 1e30 then has a finite output in float32.
    """
    groups = draw(st.sampled_from([1, 2, 4]))
    width = groups * draw(st.integers(1, 9))
    leading = draw(st.lists(st.integers(0, 4), max_size=2))
    n = draw(st.integers(1, 8))
    m = draw(st.integers(0, min(8, n + 1)))
    dtype = draw(st.sampled_from(DTYPES))
    numel = width
    for size in leading:
        numel *= size
    magnitude = st.floats(-1e30, 1e30, allow_nan=False, allow_infinity=False)
    small = st.floats(-3, 3, allow_nan=False)
    values = draw(st.lists(st.one_of(magnitude, small), min_size=numel, max_size=numel))
    x = torch.tensor(values, dtype=torch.float32).reshape(*leading, width).to(dtype)
    coefficient = st.floats(-2, 2, allow_nan=False)
    num = torch.tensor(draw(st.lists(coefficient, min_size=groups * (m + 1),
                                     max_size=groups * (m + 1)))).reshape(groups, m + 1)
    den = torch.tensor(draw(st.lists(coefficient, min_size=groups * n,
                                     max_size=groups * n))).reshape(groups, n)
    lead = den[:, -1]
    den[:, -1] = torch.where(lead.abs() < 0.1, torch.full_like(lead, 0.1), lead)
    return x, num, den, draw(st.sampled_from(VARIANTS))


@pytest.mark.kernels
@settings(max_examples=60, deadline=None)
@given(problems())
def test_finite_inputs_give_finite_outputs_and_gradients(problem):
    x, num, den, variant = problem
    x = x.requires_grad_()
    y = group_rational(x, num.requires_grad_(), den.requires_grad_(), variant)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert torch.isfinite(y).all()
    y.float().sum().backward()
    # dL/dx is bounded; coefficient gradients sum x^j / Q over elements and may be large,
    # but never NaN.
    assert torch.isfinite(x.grad).all()
    assert not num.grad.isnan().any() and not den.grad.isnan().any()


@pytest.mark.kernels
@settings(max_examples=60, deadline=None)
@given(problems())
def test_kernel_agrees_with_float64_reference(problem):
    x, num, den, variant = problem
    y = group_rational(x, num, den, variant).double()
    expected = group_rational_reference(x.double(), num, den, variant)
    if expected.numel() == 0:
        return
    tolerance = {torch.float32: 1e-4, torch.float64: 1e-10, torch.bfloat16: 1e-2}[x.dtype]
    # Elementwise relative error, with an absolute floor for outputs near zero.
    scale = expected.abs().clamp_min(1.0)
    assert ((y - expected).abs() / scale).max() < tolerance
