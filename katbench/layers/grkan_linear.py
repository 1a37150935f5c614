"""GRKANLinear: one Group-Rational KAN layer, a group-wise rational followed by a linear map."""

from __future__ import annotations

import math

import torch
from torch import nn

from katbench.layers.group_rational import GroupRational


@torch.no_grad()
def variance_preserving_(linear: nn.Linear, gain: float) -> nn.Linear:
    r"""Draw ``linear.weight`` from :math:`\mathcal N(0, 1 / (\alpha\, d_{in}))`, bias zero.

    With inputs F(x) of second moment :math:`\alpha\,\mathrm{Var}[x]` this keeps
    :math:`\mathrm{Var}[y] = d_{in}\mathrm{Var}[w]\,\mathbb E[F(x)^2] = \mathrm{Var}[x]`
    (paper Eq. 16; the text's ":math:`\mathcal N(0, \alpha/d_{in})`" would scale it by
    :math:`\alpha^2`).
    """
    nn.init.normal_(linear.weight, 0.0, 1.0 / math.sqrt(gain * linear.in_features))
    if linear.bias is not None:
        nn.init.zeros_(linear.bias)
    return linear


class GRKANLinear(nn.Module):
    r"""GR-KAN layer (paper Eq. 11-13): :math:`y = W\,F(x) + c`.

    .. math::
        y_j = \sum_{i=1}^{d_{in}} w_{ij} F_{\lfloor i / d_g \rfloor}(x_i) + c_j

    ``F`` is a :class:`GroupRational` with ``num_groups`` groups (which must divide
    ``in_features``) initialised to fit ``init``; ``W`` is drawn variance-preserving from the
    stored gain alpha of ``init`` (:func:`variance_preserving_`), ``c`` is zero.
    """

    def __init__(self, in_features: int, out_features: int, num_groups: int = 8,
                 init: str = "swish", bias: bool = True, order: tuple[int, int] = (5, 4),
                 variant: str = "sum_abs", shared_numerator: bool = True) -> None:
        super().__init__()
        if in_features % num_groups != 0:
            raise ValueError(f"in_features={in_features} is not divisible by num_groups="
                             f"{num_groups}; choose a divisor (num_groups=1 fits any width)")
        self.in_features, self.out_features = in_features, out_features
        self.rational = GroupRational(num_groups, order, init, variant, shared_numerator)
        self.linear = nn.Linear(in_features, out_features, bias=bias)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Refit-initialise the rational and redraw the weights from its gain."""
        self.rational.reset_parameters()
        variance_preserving_(self.linear, self.rational.gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.rational(x))
