"""Fitting targets: formulas, boxes and seeded sampling."""

from __future__ import annotations

import math

import pytest
import torch

from katbench.data.functions import FUNCTIONS, grid, sample


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_samples_lie_in_the_box_and_are_seeded(name):
    x, y = sample(name, 500, seed=3)
    (x_lo, x_hi), (y_lo, y_hi) = FUNCTIONS[name].box
    assert x.shape == (500, 2) and y.shape == (500, 1) and torch.isfinite(y).all()
    assert x_lo <= x[:, 0].min() and x[:, 0].max() <= x_hi
    assert y_lo <= x[:, 1].min() and x[:, 1].max() <= y_hi
    assert torch.equal(sample(name, 500, seed=3)[0], x)


def test_formulas_match_hand_values():
    point = (torch.tensor([0.5]), torch.tensor([0.5]))
    assert float(FUNCTIONS["exp_sin_r2"].f(*point)) == pytest.approx(math.exp(math.sin(0.5)))
    assert float(FUNCTIONS["exp_sinpi_y2"].f(*point)) == pytest.approx(math.exp(1.25))
    assert float(FUNCTIONS["exp_j0_y2"].f(torch.tensor([0.0]), torch.tensor([0.0]))) \
        == pytest.approx(math.e)
    assert float(FUNCTIONS["x_div_y"].f(*point)) == 1.0
    assert float(FUNCTIONS["sum_prod"].f(*point)) == 1.25


def test_x_div_y_keeps_y_away_from_zero():
    _, y = sample("x_div_y", 10_000, seed=0)
    assert y.abs().max() <= 2.0


def test_grid_and_errors():
    x, y, f = grid("xy", 5)
    assert x.shape == y.shape == f.shape == (5, 5) and torch.allclose(f, x * y)
    with pytest.raises(ValueError, match="unknown function 'nope'; known: exp_sin_r2"):
        sample("nope", 3, 0)
