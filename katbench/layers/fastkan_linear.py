"""FastKANLinear: the Gaussian radial-basis KAN layer of FastKAN (Li, 2024)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


class FastKANLinear(nn.Module):
    r"""Gaussian RBF Kolmogorov–Arnold layer on ``(..., in_features)`` inputs.

    .. math::
        y_j = \sum_i \sum_{k=1}^{G} w_{jik}\,
              \exp\Bigl(-\Bigl(\frac{\mathrm{LN}(x)_i - g_k}{h}\Bigr)^2\Bigr)
              + \sum_i w^{b}_{ji}\, \mathrm{silu}(x_i) + c_j

    with ``G = grid_size`` centres :math:`g_k` evenly spaced on ``grid_range`` and width
    :math:`h = (g_G - g_1) / (G - 1)`; FastKAN's observation is that these Gaussians approximate
    the cubic B-splines of a KAN layer on the same grid, at the cost of one exponential per basis
    function. ``LN`` is a LayerNorm over the input features (``layer_norm=False`` drops it), which
    keeps the inputs on the grid. The base branch ``w^b silu(x) + c`` is an ``nn.Linear`` on the
    raw inputs (``base_activation=None`` drops it, and with it the bias).

    Initialisation: ``w`` truncated normal of std ``spline_init_scale`` (cut at 2 std), the base
    branch as ``nn.Linear``, the LayerNorm as the identity.
    """

    def __init__(self, in_features: int, out_features: int, grid_size: int = 8,
                 grid_range: tuple[float, float] = (-2.0, 2.0), layer_norm: bool = True,
                 base_activation: Callable[[], nn.Module] | None = nn.SiLU,
                 spline_init_scale: float = 0.1) -> None:
        super().__init__()
        if grid_size < 2 or not grid_range[0] < grid_range[1]:
            raise ValueError(f"grid_size={grid_size} must be >= 2 and grid_range={grid_range} "
                             "increasing, e.g. grid_size=8, grid_range=(-2, 2)")
        self.in_features, self.out_features = in_features, out_features
        self.grid_size, self.spline_init_scale = grid_size, spline_init_scale
        self.grid_range = (float(grid_range[0]), float(grid_range[1]))
        self.width = (self.grid_range[1] - self.grid_range[0]) / (grid_size - 1)
        self.norm = nn.LayerNorm(in_features) if layer_norm else nn.Identity()
        self.spline_weight = nn.Parameter(torch.empty(out_features, in_features * grid_size))
        self.base_activation = base_activation() if base_activation is not None else None
        self.base = nn.Linear(in_features, out_features) if base_activation is not None else None
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Truncated-normal RBF weights, ``nn.Linear`` base branch, identity LayerNorm."""
        if isinstance(self.norm, nn.LayerNorm):
            self.norm.reset_parameters()
        scale = self.spline_init_scale
        nn.init.trunc_normal_(self.spline_weight, std=scale, a=-2 * scale, b=2 * scale)
        if self.base is not None:
            self.base.reset_parameters()

    def basis(self, x: torch.Tensor) -> torch.Tensor:
        """Gaussian bases of already normalised ``x`` ``(..., in)`` -> ``(..., in, G)``."""
        centres = torch.linspace(*self.grid_range, self.grid_size, dtype=x.dtype, device=x.device)
        return torch.exp(-((x.unsqueeze(-1) - centres) / self.width).square())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(self.basis(self.norm(x)).flatten(-2), self.spline_weight)
        if self.base is not None:
            y = y + self.base(self.base_activation(x))
        return y

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"grid_size={self.grid_size}, grid_range={self.grid_range}")
