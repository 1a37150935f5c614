"""ChebyKANLinear against a plain loop over T_k(t) = cos(k arccos t)."""

from __future__ import annotations

import math

import pytest
import torch

from katbench.layers import ChebyKANLinear


def chebykan_loop(layer: ChebyKANLinear, x: torch.Tensor) -> torch.Tensor:
    """y_j = sum_i sum_k c_jik cos(k arccos(tanh x_i)), one scalar at a time."""
    out = torch.zeros(x.shape[0], layer.out_features, dtype=torch.float64)
    c = layer.coefficients.tolist()
    for b in range(x.shape[0]):
        for j in range(layer.out_features):
            total = 0.0
            for i in range(layer.in_features):
                theta = math.acos(math.tanh(x[b, i].item()))
                total += sum(c[j][i][k] * math.cos(k * theta) for k in range(layer.degree + 1))
            out[b, j] = total
    return out


@pytest.mark.parametrize("degree", [1, 2, 4, 7])
def test_forward_matches_the_loop_over_edges(degree):
    torch.manual_seed(0)
    layer = ChebyKANLinear(4, 3, degree=degree).double()
    x = torch.randn(6, 4, dtype=torch.float64) * 2
    torch.testing.assert_close(layer(x), chebykan_loop(layer, x), rtol=1e-10, atol=1e-12)


def test_gradients_stay_finite_where_tanh_saturates():
    """At |x| = 40, tanh(x) rounds to +-1, where arccos has an infinite derivative."""
    layer = ChebyKANLinear(2, 2, degree=5)
    x = torch.tensor([[40.0, -40.0]], requires_grad=True)
    layer(x).sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(layer.coefficients.grad).all()


def test_shapes_init_and_reset():
    torch.manual_seed(0)
    layer = ChebyKANLinear(64, 32, degree=3)
    assert layer(torch.randn(2, 5, 64)).shape == (2, 5, 32)
    assert layer.coefficients.shape == (32, 64, 4)
    assert layer.coefficients.std().item() == pytest.approx((1 / (64 * 4)) ** 0.5, rel=0.05)
    before = layer.coefficients.clone()
    layer.reset_parameters()
    assert not torch.equal(before, layer.coefficients)


def test_degree_below_one_raises():
    with pytest.raises(ValueError, match=r"degree=0 must be >= 1"):
        ChebyKANLinear(2, 2, degree=0)
