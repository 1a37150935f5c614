"""FourierKANLinear: the Fourier-series KAN layer (FourierKAN, 2024)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class FourierKANLinear(nn.Module):
    r"""Fourier-series Kolmogorov–Arnold layer on ``(..., in_features)`` inputs.

    .. math::
        y_j = \sum_i \sum_{k=1}^{K} \bigl(a_{jik} \cos(k x_i) + b_{jik} \sin(k x_i)\bigr) + c_j

    with ``K = grid_size`` frequencies per input: each edge function is a truncated Fourier
    series of period :math:`2\pi` (its constant terms add up to the bias ``c``, which
    ``bias=False`` drops). The weight holds ``a`` then ``b``: ``(out, in, 2K)``.

    Initialisation: ``a``, ``b`` normal of std :math:`1/\sqrt{d_{in} K}`, so that ``y`` has a
    variance of about one (:math:`2 d_{in} K` terms of mean square 1/2 each); ``c`` zero.
    """

    def __init__(self, in_features: int, out_features: int, grid_size: int = 5,
                 bias: bool = True) -> None:
        super().__init__()
        if grid_size < 1:
            raise ValueError(f"grid_size={grid_size} must be >= 1, e.g. grid_size=5")
        self.in_features, self.out_features, self.grid_size = in_features, out_features, grid_size
        self.fourier_weight = nn.Parameter(torch.empty(out_features, in_features, 2 * grid_size))
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        self.register_buffer("frequencies", torch.arange(1, grid_size + 1, dtype=torch.float32))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Normal coefficients of std 1/sqrt(in_features * grid_size), zero bias."""
        std = 1.0 / math.sqrt(self.in_features * self.grid_size)
        nn.init.normal_(self.fourier_weight, 0.0, std)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def basis(self, x: torch.Tensor) -> torch.Tensor:
        """``cos(kx)`` for k = 1..K, then ``sin(kx)``: ``(..., in)`` -> ``(..., in, 2K)``."""
        angles = x.unsqueeze(-1) * self.frequencies.to(x.dtype)
        return torch.cat([torch.cos(angles), torch.sin(angles)], -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.basis(x).flatten(-2), self.fourier_weight.flatten(1), self.bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"grid_size={self.grid_size}, bias={self.bias is not None}")
