"""FastKANLinear against a plain loop over the Gaussian RBF formula."""

from __future__ import annotations

import math

import pytest
import torch

from katbench.layers import FastKANLinear


def layer_norm_loop(row: list[float], weight: list[float], bias: list[float],
                    eps: float = 1e-5) -> list[float]:
    """LayerNorm of one row: (x - mean) / sqrt(biased variance + eps) * weight + bias."""
    mean = sum(row) / len(row)
    var = sum((v - mean) ** 2 for v in row) / len(row)
    return [(v - mean) / math.sqrt(var + eps) * w + b for v, w, b in zip(row, weight, bias,
                                                                          strict=True)]


def fastkan_loop(layer: FastKANLinear, x: torch.Tensor) -> torch.Tensor:
    """y_j = sum_i sum_k w_jik exp(-((LN(x)_i - g_k) / h)^2) + sum_i wb_ji silu(x_i) + c_j."""
    low, high = layer.grid_range
    g = layer.grid_size
    centres = [low + k * (high - low) / (g - 1) for k in range(g)]
    h = (high - low) / (g - 1)
    spline = layer.spline_weight.view(layer.out_features, layer.in_features, g).tolist()
    out = torch.zeros(x.shape[0], layer.out_features, dtype=torch.float64)
    for b in range(x.shape[0]):
        row = x[b].tolist()
        normed = layer_norm_loop(row, layer.norm.weight.tolist(), layer.norm.bias.tolist())
        for j in range(layer.out_features):
            total = layer.base.bias[j].item()
            for i in range(layer.in_features):
                total += sum(spline[j][i][k] * math.exp(-((normed[i] - centres[k]) / h) ** 2)
                             for k in range(g))
                total += layer.base.weight[j, i].item() * row[i] / (1 + math.exp(-row[i]))
            out[b, j] = total
    return out


@pytest.mark.parametrize(("grid_size", "grid_range"), [(8, (-2.0, 2.0)), (3, (-1.0, 1.5))])
def test_forward_matches_the_loop_over_edges(grid_size, grid_range):
    torch.manual_seed(0)
    layer = FastKANLinear(4, 3, grid_size=grid_size, grid_range=grid_range).double()
    with torch.no_grad():   # a non-trivial LayerNorm affine, so that it is tested too
        layer.norm.weight.uniform_(0.5, 1.5)
        layer.norm.bias.uniform_(-0.3, 0.3)
    x = torch.randn(6, 4, dtype=torch.float64) * 2
    torch.testing.assert_close(layer(x), fastkan_loop(layer, x), rtol=1e-10, atol=1e-12)


def test_without_layer_norm_or_base_branch():
    torch.manual_seed(0)
    layer = FastKANLinear(3, 2, grid_size=4, layer_norm=False, base_activation=None).double()
    assert layer.base is None and sum(p.numel() for p in layer.parameters()) == 2 * 3 * 4
    x = torch.randn(5, 3, dtype=torch.float64)
    centres = torch.linspace(-2, 2, 4, dtype=torch.float64)
    bases = torch.exp(-((x[..., None] - centres) / (4 / 3)) ** 2)   # (5, 3, 4)
    expected = torch.einsum("bik,jik->bj", bases, layer.spline_weight.view(2, 3, 4))
    torch.testing.assert_close(layer(x), expected)


def test_shapes_parameter_count_and_reset():
    torch.manual_seed(0)
    layer = FastKANLinear(6, 4, grid_size=8)
    y = layer(torch.randn(2, 3, 5, 6))
    assert y.shape == (2, 3, 5, 4)
    # LayerNorm 2*6, RBF weights 6*8*4, base Linear 6*4 + 4
    assert sum(p.numel() for p in layer.parameters()) == 12 + 192 + 28
    assert layer.spline_weight.abs().max() <= 0.2 + 1e-7       # truncated at 2 std
    before = layer.spline_weight.clone()
    layer.reset_parameters()
    assert not torch.equal(before, layer.spline_weight)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"grid_size": 1}, r"grid_size=1 must be >= 2"),
    ({"grid_range": (1.0, -1.0)}, r"grid_range=\(1.0, -1.0\) increasing")])
def test_bad_settings_raise_naming_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FastKANLinear(2, 2, **kwargs)
