"""katbench::rational_linear: linear(F(x + input_bias), weight, bias) keeping x, not F(x).

The op's output and gradients equal the unfused pair's for every combination of optional inputs
and of inputs that need no gradient, first and second derivatives; it passes ``opcheck`` (schema,
fake kernel, autograd registration, torch.compile's dispatch) with the loaded backend and Triton.
"""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from katbench.ops import group_rational, load_kernels

from .test_group_rational import DEVICES, coefficients, skip_without, with_triton

RATIONAL_LINEAR = torch.ops.katbench.rational_linear.default


def _inputs(device: str, input_bias: bool, bias: bool, dtype=torch.float32):
    gen = torch.Generator().manual_seed(0)
    num, den = coefficients(4, (5, 4), device, dtype)
    x = torch.randn(2, 3, 16, generator=gen, dtype=dtype).to(device)
    weight = torch.randn(8, 16, generator=gen, dtype=dtype).to(device)
    maybe = {True: lambda n: torch.randn(n, generator=gen, dtype=dtype).to(device),
             False: lambda n: None}
    return x, num, den, maybe[input_bias](16), weight, maybe[bias](8)


def _unfused(x, num, den, variant, input_bias, weight, bias, lowest_peak=False):
    return F.linear(group_rational(x, num, den, variant, input_bias), weight, bias)


@pytest.mark.parametrize("input_bias,bias", itertools.product([False, True], repeat=2))
@pytest.mark.parametrize("frozen", [(), ("weight",), ("x", "num"), ("den", "bias", "input_bias")])
@pytest.mark.parametrize("lowest_peak", [False, True])
def test_gradients_equal_the_unfused_pairs(input_bias, bias, frozen, lowest_peak):
    """Each gradient lands on its own input whichever optional inputs are given and whichever
    inputs need none (autograd counts only the tensors passed)."""
    load_kernels()
    names = ("x", "num", "den", "input_bias", "weight", "bias")
    values = _inputs("cpu", input_bias, bias)
    grads = []
    for op in (RATIONAL_LINEAR, _unfused):
        leaves = [None if t is None else t.clone().requires_grad_(name not in frozen)
                  for name, t in zip(names, values, strict=True)]
        x, num, den, ib, weight, b = leaves
        out = op(x, num, den, "sum_abs", ib, weight, b, lowest_peak)
        out.pow(2).sum().backward()
        grads.append((out, [None if t is None else t.grad for t in leaves]))
    (fused_out, fused), (plain_out, plain) = grads
    torch.testing.assert_close(fused_out, plain_out)
    for name, got, expected in zip(names, fused, plain, strict=True):
        assert (got is None) == (expected is None), name
        if got is not None:
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5, msg=name)


@pytest.mark.parametrize("input_bias,bias", [(False, True), (True, False)])
def test_second_derivatives_equal_the_unfused_pairs(input_bias, bias):
    """create_graph=True (a PINN's u'') differentiates the op's backward."""
    load_kernels()
    values = _inputs("cpu", input_bias, bias, torch.float64)
    second = []
    for op in (RATIONAL_LINEAR, _unfused):
        leaves = [t if t is None else t.clone().requires_grad_() for t in values]
        x, num, den, ib, weight, b = leaves
        (dx,) = torch.autograd.grad(op(x, num, den, "abs_sum", ib, weight, b).sum(), x,
                                    create_graph=True)
        second.append(torch.autograd.grad(dx.square().sum(),
                                          [t for t in leaves if t is not None],
                                          materialize_grads=True))
    for got, expected in zip(*second, strict=True):
        torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend,input_bias,bias,lowest_peak", with_triton(
    [(i, b, p) for i, b in itertools.product([False, True], repeat=2) for p in (False, True)],
    [(True, False, False)]), indirect=["backend"])
def test_opcheck(device, backend, input_bias, bias, lowest_peak):
    skip_without(device)
    load_kernels()
    x, num, den, ib, weight, b = (t if t is None else t.requires_grad_()
                                  for t in _inputs(device, input_bias, bias))
    torch.library.opcheck(RATIONAL_LINEAR, (x, num, den, "sum_abs", ib, weight, b, lowest_peak))
