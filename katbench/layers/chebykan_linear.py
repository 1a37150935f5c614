"""ChebyKANLinear: the Chebyshev-polynomial KAN layer (ChebyKAN, 2024)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class ChebyKANLinear(nn.Module):
    r"""Chebyshev Kolmogorov–Arnold layer on ``(..., in_features)`` inputs.

    .. math::
        y_j = \sum_i \sum_{k=0}^{d} c_{jik}\, T_k(\tanh x_i), \qquad
        T_k(t) = \cos(k \arccos t)

    with ``d = degree``; ``tanh`` squashes every input into the polynomials' domain [-1, 1].
    The polynomials are evaluated by the recurrence :math:`T_0 = 1`, :math:`T_1 = t`,
    :math:`T_{k+1} = 2t\,T_k - T_{k-1}` (exact, and with finite gradients at :math:`t = \pm 1`,
    where :math:`\arccos` has none). :math:`T_0` makes :math:`\sum_i c_{ji0}` the layer's bias.

    Initialisation: ``c`` normal of std :math:`1/\sqrt{d_{in}(d+1)}`, so that ``y`` has a
    variance of order one for inputs of order one (each of the :math:`d_{in}(d+1)` terms has
    :math:`T_k^2 \le 1`).
    """

    def __init__(self, in_features: int, out_features: int, degree: int = 4) -> None:
        super().__init__()
        if degree < 1:
            raise ValueError(f"degree={degree} must be >= 1, e.g. degree=4")
        self.in_features, self.out_features, self.degree = in_features, out_features, degree
        self.coefficients = nn.Parameter(torch.empty(out_features, in_features, degree + 1))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Normal coefficients of std 1/sqrt(in_features * (degree + 1))."""
        std = 1.0 / math.sqrt(self.in_features * (self.degree + 1))
        nn.init.normal_(self.coefficients, 0.0, std)

    def basis(self, x: torch.Tensor) -> torch.Tensor:
        """``T_0..T_d`` of ``tanh(x)`` for ``x`` ``(..., in)`` -> ``(..., in, d + 1)``."""
        t = torch.tanh(x)
        polys = [torch.ones_like(t), t]
        for _ in range(2, self.degree + 1):
            polys.append(2 * t * polys[-1] - polys[-2])
        return torch.stack(polys, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.basis(x).flatten(-2), self.coefficients.flatten(1))

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"degree={self.degree}")
