"""KANLinear against a plain loop implementation of B-spline bases and of the layer."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from katbench.layers import KANLinear
from katbench.layers.kan_linear import uniform_basis_polynomials


def bspline_loop(knots: list[float], k: int, p: int, x: float) -> float:
    """B_{k,p}(x) by the textbook Cox–de Boor recursion, one scalar at a time."""
    if p == 0:
        return 1.0 if knots[k] <= x < knots[k + 1] else 0.0
    left = (x - knots[k]) / (knots[k + p] - knots[k]) * bspline_loop(knots, k, p - 1, x)
    right = (knots[k + p + 1] - x) / (knots[k + p + 1] - knots[k + 1]) \
        * bspline_loop(knots, k + 1, p - 1, x)
    return left + right


@pytest.mark.parametrize(("grid_size", "spline_order"), [(5, 3), (3, 1), (4, 0), (7, 2)])
def test_bases_match_the_loop_implementation(grid_size, spline_order):
    torch.manual_seed(0)
    layer = KANLinear(3, 2, grid_size=grid_size, spline_order=spline_order,
                      grid_range=(-1.5, 1.0))
    x = torch.rand(20, 3, dtype=torch.float64) * 4 - 2   # inside and outside the grid
    bases = layer.b_splines(x)
    assert bases.shape == (20, 3, grid_size + spline_order)
    for b in range(20):
        for i in range(3):
            knots = layer.grid[i].double().tolist()
            expected = [bspline_loop(knots, k, spline_order, x[b, i].item())
                        for k in range(grid_size + spline_order)]
            # the knots are float32 values: the uniform-grid bases differ at that precision
            torch.testing.assert_close(bases[b, i], torch.tensor(expected, dtype=torch.float64),
                                       rtol=0, atol=1e-6)


def test_bases_sum_to_one_inside_the_grid():
    layer = KANLinear(4, 1, grid_size=6, spline_order=3)
    x = torch.rand(100, 4) * 2 - 1
    torch.testing.assert_close(layer.b_splines(x).sum(-1), torch.ones(100, 4))


def test_forward_matches_the_loop_over_edges():
    torch.manual_seed(0)
    layer = KANLinear(3, 2, grid_size=4, spline_order=2).double()
    x = torch.rand(5, 3, dtype=torch.float64) * 2 - 1
    y = layer(x)
    for b in range(5):
        for j in range(2):
            total = 0.0
            for i in range(3):
                xi = x[b, i].item()
                knots = layer.grid[i].tolist()
                spline = sum(layer.spline_weight[j, i, k].item()
                             * bspline_loop(knots, k, 2, xi) for k in range(6))
                silu = xi / (1 + math.exp(-xi))
                total += layer.base_weight[j, i].item() * silu \
                    + layer.spline_scaler[j, i].item() * spline
            assert y[b, j].item() == pytest.approx(total, rel=1e-10, abs=1e-12)


def test_any_leading_shape_and_backward():
    layer = KANLinear(6, 4)
    x = torch.randn(2, 3, 5, 6, requires_grad=True)
    y = layer(x)
    assert y.shape == (2, 3, 5, 4)
    y.sum().backward()
    assert x.grad.shape == x.shape
    assert layer.spline_weight.grad.abs().sum() > 0


def test_update_grid_keeps_the_function_and_covers_the_data():
    torch.manual_seed(0)
    layer = KANLinear(3, 2, grid_size=5).double()
    x = torch.rand(256, 3, dtype=torch.float64) * 1.6 - 0.8   # inside the old grid
    before = layer(x)
    layer.update_grid(x)
    torch.testing.assert_close(layer(x), before, atol=1e-3, rtol=1e-3)
    inner = layer.grid[:, layer.spline_order:-layer.spline_order]
    shift = layer.grid_eps * 0.01   # the uniform grid is widened by margin=0.01
    torch.testing.assert_close(inner[:, 0], x.min(0).values - shift)
    torch.testing.assert_close(inner[:, -1], x.max(0).values + shift)


def test_init_is_small_splines_and_kaiming_base():
    torch.manual_seed(0)
    layer = KANLinear(64, 32, grid_size=5, scale_noise=0.1)
    bases = layer.b_splines(torch.rand(50, 64) * 2 - 1)
    spline = torch.einsum("bik,jik->bij", bases, layer.spline_weight.detach())
    assert spline.abs().max() < 0.1 / 5
    assert layer.base_weight.abs().max() <= 1 / 64 ** 0.5 + 1e-6   # kaiming_uniform a=sqrt(5)
    before = layer.base_weight.clone()
    layer.reset_parameters()
    assert not torch.equal(before, layer.base_weight)


def test_base_activation_is_configurable():
    layer = KANLinear(2, 1, base_activation=nn.Identity)
    with torch.no_grad():
        layer.spline_weight.zero_()
    x = torch.randn(4, 2)
    torch.testing.assert_close(layer(x), x @ layer.base_weight.T)


@pytest.mark.parametrize(("grid_size", "spline_order"), [(5, 3), (3, 1), (7, 2), (4, 4)])
def test_uniform_bases_and_their_gradients_match_cox_de_boor(grid_size, spline_order):
    torch.manual_seed(0)
    layer = KANLinear(4, 2, grid_size=grid_size, spline_order=spline_order,
                      grid_range=(-1.5, 1.0)).double()
    x = (torch.rand(300, 4, dtype=torch.float64) * 5 - 2.5).requires_grad_()  # in and out
    fast, slow = layer.uniform_b_splines(x), layer.cox_de_boor(x)
    # equal up to the knots' float32 rounding (the grid buffer was made in float32)
    torch.testing.assert_close(fast, slow, rtol=0, atol=1e-6)
    grad = torch.randn_like(fast)
    torch.testing.assert_close(torch.autograd.grad(fast, x, grad)[0],
                               torch.autograd.grad(slow, x, grad)[0], rtol=1e-5, atol=1e-5)


def test_uniform_bases_have_second_derivatives():
    # a PINN differentiates the layer twice in x
    layer = KANLinear(2, 1, grid_size=5, spline_order=3).double()
    x = (torch.rand(6, 2, dtype=torch.float64) * 1.8 - 0.9).requires_grad_()
    assert torch.autograd.gradgradcheck(layer.uniform_b_splines, (x,))


def test_moved_knots_use_cox_de_boor_also_after_loading():
    torch.manual_seed(0)
    layer = KANLinear(3, 2, grid_size=5).double()
    assert layer.uniform
    x = torch.rand(64, 3, dtype=torch.float64) * 1.6 - 0.8
    layer.update_grid(x)
    assert not layer.uniform
    copy = KANLinear(3, 2, grid_size=5).double()
    copy.load_state_dict(layer.state_dict())
    assert not copy.uniform
    torch.testing.assert_close(copy(x), layer(x))
    copy.load_state_dict(KANLinear(3, 2, grid_size=5).double().state_dict())
    assert copy.uniform


def test_uniform_basis_polynomials_are_the_cubic_b_spline_pieces():
    # the textbook uniform cubic pieces: (1-f)^3/6, (3f^3-6f^2+4)/6, (-3f^3+3f^2+3f+1)/6, f^3/6
    expected = torch.tensor([[1, 4, 1, 0], [-3, 0, 3, 0], [3, -6, 3, 0], [-1, 3, -3, 1]],
                            dtype=torch.float64) / 6
    torch.testing.assert_close(uniform_basis_polynomials(3), expected, rtol=0, atol=1e-15)
    for order in range(1, 6):   # a partition of unity: the pieces sum to the constant 1
        sums = uniform_basis_polynomials(order).sum(1)
        torch.testing.assert_close(sums, torch.eye(order + 1, dtype=torch.float64)[0])


def test_basis_constants_stay_out_of_the_state_dict():
    # checkpoints written before the constants existed still load
    assert set(KANLinear(3, 2).state_dict()) == {"grid", "base_weight", "spline_weight",
                                                 "spline_scaler"}


def test_uniform_bases_are_exact_in_float64():
    # integer piece coefficients: in float64 the bases sum to 1 to rounding, so the pieces join
    # as smoothly as the recursion's (a PINN's finite-difference second derivatives)
    layer = KANLinear(3, 2, grid_size=5, spline_order=3).double()
    x = torch.rand(1000, 3, dtype=torch.float64) * 1.8 - 0.9
    sums = layer.uniform_b_splines(x).sum(-1)
    torch.testing.assert_close(sums, torch.ones_like(sums), rtol=0, atol=1e-14)
