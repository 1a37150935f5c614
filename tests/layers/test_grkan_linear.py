"""GRKANLinear: rational then linear, variance-preserving weights, torch.compile."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from katbench.init import rational_init
from katbench.layers import GRKANLinear, variance_preserving_


def test_forward_is_linear_of_group_rational():
    layer = GRKANLinear(16, 24, num_groups=4, init="gelu")
    x = torch.randn(2, 7, 16)
    torch.testing.assert_close(layer(x), layer.linear(layer.rational(x)))
    assert layer(x).shape == (2, 7, 24)


def test_weights_are_drawn_from_the_gain_of_the_init():
    torch.manual_seed(0)
    layer = GRKANLinear(768, 768, init="swish")
    alpha = rational_init("swish").gain
    assert layer.linear.weight.std().item() == pytest.approx(1 / math.sqrt(alpha * 768),
                                                             rel=0.01)
    assert layer.linear.weight.mean().abs().item() < 1e-3
    assert torch.count_nonzero(layer.linear.bias) == 0
    assert GRKANLinear(8, 4, bias=False).linear.bias is None


@pytest.mark.parametrize("init", ["swish", "gelu", "relu", "tanh"])
def test_output_variance_matches_unit_input_variance(init):
    torch.manual_seed(1)
    layer = GRKANLinear(512, 512, init=init)
    with torch.no_grad():
        y = layer(torch.randn(4096, 512))
    assert y.var().item() == pytest.approx(1.0, rel=0.1)


def test_variance_preserving_draws_the_documented_std():
    linear = variance_preserving_(nn.Linear(1000, 500), gain=0.25)
    assert linear.weight.std().item() == pytest.approx(1 / math.sqrt(0.25 * 1000), rel=0.02)


def test_reset_parameters_redraws_weights_and_restores_the_rational():
    layer = GRKANLinear(8, 8, num_groups=2)
    before = layer.linear.weight.clone()
    with torch.no_grad():
        layer.rational.denominator.zero_()
    layer.reset_parameters()
    assert not torch.equal(before, layer.linear.weight)
    torch.testing.assert_close(layer.rational.denominator[0],
                               torch.tensor(rational_init("swish").denominator))


def test_in_features_not_divisible_raises_at_construction():
    with pytest.raises(ValueError, match=r"in_features=10 is not divisible by num_groups=8.*"
                                         r"num_groups=1"):
        GRKANLinear(10, 4)


def test_compiled_fullgraph_matches_eager():
    torch.manual_seed(0)
    layer = GRKANLinear(16, 8, num_groups=4, init="gelu")
    x = torch.randn(3, 16, requires_grad=True)
    compiled = torch.compile(layer, fullgraph=True)
    expected, got = layer(x), compiled(x)
    torch.testing.assert_close(got, expected)
    (grad_eager,) = torch.autograd.grad(expected.sum(), x)
    (grad_compiled,) = torch.autograd.grad(got.sum(), x)
    torch.testing.assert_close(grad_compiled, grad_eager)


@pytest.mark.parametrize("autocast", [False, True])
def test_recompute_gives_the_same_output_and_gradients(autocast, output_and_gradients):
    torch.manual_seed(0)
    plain = GRKANLinear(16, 12, num_groups=4)
    recomputed = GRKANLinear(16, 12, num_groups=4, recompute=True)
    recomputed.load_state_dict(plain.state_dict())
    x = torch.randn(3, 5, 16)
    expected = output_and_gradients(plain, x, autocast)
    got = output_and_gradients(recomputed, x, autocast)
    tolerance = 2e-2 if autocast else 1e-5
    for e, g in zip(expected, got, strict=True):
        assert g.dtype == e.dtype and g.shape == e.shape
        torch.testing.assert_close(g, e, rtol=tolerance, atol=tolerance)


def test_recompute_keeps_the_input_not_the_rational_output(saved_bytes):
    x = torch.randn(64, 32, requires_grad=True)
    plain, recomputed = GRKANLinear(32, 8), GRKANLinear(32, 8, recompute=True)
    difference = saved_bytes(lambda: plain(x)) - saved_bytes(lambda: recomputed(x))
    assert difference == x.numel() * x.element_size()   # F(x): same size as x


def test_recompute_supports_higher_derivatives():
    """create_graph=True (a PINN's u''): the recomputing op's backward is differentiable, with
    the plain layer's second derivatives."""
    torch.manual_seed(0)
    plain = GRKANLinear(8, 4, num_groups=2).double()
    recomputed = GRKANLinear(8, 4, num_groups=2, recompute=True).double()
    recomputed.load_state_dict(plain.state_dict())
    x = torch.randn(5, 8, dtype=torch.float64, requires_grad=True)
    second = []
    for layer in (plain, recomputed):
        (dx,) = torch.autograd.grad(layer(x).sum(), x, create_graph=True)
        second.append(torch.autograd.grad(dx.square().sum(), [x, *layer.parameters()],
                                          materialize_grads=True))
    for e, g in zip(*second, strict=True):
        torch.testing.assert_close(g, e)
