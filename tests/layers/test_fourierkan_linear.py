"""FourierKANLinear against a plain loop over the truncated Fourier series."""

from __future__ import annotations

import math

import pytest
import torch

from katbench.layers import FourierKANLinear


def fourierkan_loop(layer: FourierKANLinear, x: torch.Tensor) -> torch.Tensor:
    """y_j = sum_i sum_k a_jik cos(k x_i) + b_jik sin(k x_i) + c_j, one scalar at a time."""
    K = layer.grid_size
    w = layer.fourier_weight.tolist()
    out = torch.zeros(x.shape[0], layer.out_features, dtype=torch.float64)
    for b in range(x.shape[0]):
        for j in range(layer.out_features):
            total = layer.bias[j].item() if layer.bias is not None else 0.0
            for i in range(layer.in_features):
                xi = x[b, i].item()
                total += sum(w[j][i][k - 1] * math.cos(k * xi) + w[j][i][K + k - 1]
                             * math.sin(k * xi) for k in range(1, K + 1))
            out[b, j] = total
    return out


@pytest.mark.parametrize(("grid_size", "bias"), [(1, True), (5, True), (3, False)])
def test_forward_matches_the_loop_over_edges(grid_size, bias):
    torch.manual_seed(0)
    layer = FourierKANLinear(4, 3, grid_size=grid_size, bias=bias).double()
    if bias:
        with torch.no_grad():
            layer.bias.normal_()
    x = torch.randn(6, 4, dtype=torch.float64) * 3
    torch.testing.assert_close(layer(x), fourierkan_loop(layer, x), rtol=1e-10, atol=1e-12)


def test_shapes_init_and_reset():
    torch.manual_seed(0)
    layer = FourierKANLinear(64, 32, grid_size=4)
    assert layer(torch.randn(2, 5, 64)).shape == (2, 5, 32)
    assert sum(p.numel() for p in layer.parameters()) == 32 * 64 * 8 + 32
    assert layer.fourier_weight.std().item() == pytest.approx((1 / (64 * 4)) ** 0.5, rel=0.05)
    with torch.no_grad():   # the init keeps the output variance near one
        var = layer(torch.randn(4096, 64)).var().item()
    assert var == pytest.approx(1.0, rel=0.15)
    before = layer.fourier_weight.clone()
    layer.reset_parameters()
    assert not torch.equal(before, layer.fourier_weight) and not layer.bias.any()


def test_grid_size_below_one_raises():
    with pytest.raises(ValueError, match=r"grid_size=0 must be >= 1"):
        FourierKANLinear(2, 2, grid_size=0)
