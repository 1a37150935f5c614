"""Two-variable target functions of the KAN paper's fitting examples (KAT paper, appendix B).

Each target is a formula plus its sampling box; inputs are drawn uniformly from the box with a
seeded generator, so the data needs no download and is identical on every machine. ``x/y``
samples ``y`` from [0.5, 2] so the target stays bounded (|x/y| <= 2) and the MSE is not
dominated by a few points next to the pole at ``y = 0``.

=================  ============================  ====================
name               f(x, y)                       box (x, y)
=================  ============================  ====================
``exp_sin_r2``     exp(sin(x^2 + y^2))           [-1, 1] x [-1, 1]
``exp_sinpi_y2``   exp(sin(pi x) + y^2)          [-1, 1] x [-1, 1]
``exp_j0_y2``      exp(J0(20 x) + y^2)           [-1, 1] x [-1, 1]
``xy``             x y                           [-1, 1] x [-1, 1]
``x_div_y``        x / y                         [-1, 1] x [0.5, 2]
``sum_prod``       (x + y) + x y                 [-1, 1] x [-1, 1]
=================  ============================  ====================
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = ["FUNCTIONS", "Target", "grid", "sample"]


@dataclass(frozen=True)
class Target:
    """A target ``f(x, y)`` and the box ``((x_lo, x_hi), (y_lo, y_hi))`` it is sampled on."""

    formula: str
    f: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    box: tuple[tuple[float, float], tuple[float, float]]


UNIT = ((-1.0, 1.0), (-1.0, 1.0))
FUNCTIONS: dict[str, Target] = {
    "exp_sin_r2": Target("exp(sin(x^2+y^2))", lambda x, y: torch.exp(torch.sin(x**2 + y**2)),
                         UNIT),
    "exp_sinpi_y2": Target("exp(sin(pi x)+y^2)",
                           lambda x, y: torch.exp(torch.sin(math.pi * x) + y**2), UNIT),
    "exp_j0_y2": Target("exp(J0(20x)+y^2)",
                        lambda x, y: torch.exp(torch.special.bessel_j0(20 * x) + y**2), UNIT),
    "xy": Target("xy", lambda x, y: x * y, UNIT),
    "x_div_y": Target("x/y", lambda x, y: x / y, ((-1.0, 1.0), (0.5, 2.0))),
    "sum_prod": Target("(x+y)+xy", lambda x, y: (x + y) + x * y, UNIT),
}


def _target(name: str) -> Target:
    if name not in FUNCTIONS:
        raise ValueError(f"unknown function {name!r}; known: {', '.join(FUNCTIONS)}")
    return FUNCTIONS[name]


def sample(name: str, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` points drawn uniformly from the box: inputs ``(n, 2)`` and targets ``(n, 1)``."""
    if n < 1:
        raise ValueError(f"sample size n={n} must be >= 1")
    target = _target(name)
    g = torch.Generator().manual_seed(seed)
    lo = torch.tensor([target.box[0][0], target.box[1][0]])
    hi = torch.tensor([target.box[0][1], target.box[1][1]])
    xy = lo + (hi - lo) * torch.rand(n, 2, generator=g)
    return xy, target.f(xy[:, 0], xy[:, 1]).unsqueeze(1)


def grid(name: str, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """An ``n x n`` grid over the box: ``x`` and ``y`` of shape ``(n, n)`` and ``f(x, y)``."""
    target = _target(name)
    xs = torch.linspace(*target.box[0], n)
    ys = torch.linspace(*target.box[1], n)
    x, y = torch.meshgrid(xs, ys, indexing="xy")
    return x, y, target.f(x, y)
