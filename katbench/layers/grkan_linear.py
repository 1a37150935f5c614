"""GRKANLinear: one Group-Rational KAN layer, a group-wise rational followed by a linear map."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from katbench.layers.group_rational import RANDOM_INIT, GroupRational
from katbench.ops import autocast_dtype, load_kernels
from katbench.ops.reference import check_arguments


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


def init_linear_after_(linear: nn.Linear, rational: GroupRational) -> nn.Linear:
    """Initialise the linear layer that reads ``rational``'s output: variance-preserving from
    its gain (:func:`variance_preserving_`), or, after a ``random`` rational, PyTorch's default
    ``nn.Linear`` init (the paper's "Random": Xavier coefficients *without* the
    variance-preserving init, Table 8; "PyTorch's default random initialization", Table 13)."""
    if rational.init == RANDOM_INIT:
        linear.reset_parameters()
        return linear
    return variance_preserving_(linear, rational.gain)


_RATIONAL_LINEAR = torch.ops.katbench.rational_linear.default


def rational_linear(x: torch.Tensor, rational: GroupRational, linear: nn.Linear,
                    recompute: bool = False, input_bias: torch.Tensor | None = None,
                    skip_bias: bool = False, lowest_peak: bool = False) -> torch.Tensor:
    """``linear(rational(x + input_bias))``; ``skip_bias`` leaves ``linear.bias`` out (for the
    next rational to add, see :meth:`GroupRational.forward`).

    With ``recompute`` the pair is one op, ``katbench::rational_linear`` (C++ forward and
    autograd kernels with the compiled backend), that keeps one activation (``x``) where the
    pair kept two: the backward kernel of the rational writes ``rational(x)`` again for the
    weight gradient (one write, no extra kernel), or with ``lowest_peak`` a forward kernel
    recomputes it, freed before the backward kernel runs (one more kernel; the backward's peak
    is lower by a tensor of x's size). Under autocast both run in the autocast dtype, as
    unfused.
    """
    if not recompute and not skip_bias:
        return linear(rational(x, input_bias))
    bias = None if skip_bias else linear.bias
    if not recompute:  # (linear's forward hooks do not run without its bias, as in Megatron)
        return F.linear(rational(x, input_bias), linear.weight, bias)
    check_arguments(x, rational.numerator, rational.denominator, rational.variant, input_bias)
    load_kernels()
    weight = linear.weight
    dtype = autocast_dtype(x)
    if dtype is not None:
        x, weight = x.to(dtype), weight.to(dtype)
        bias = None if bias is None else bias.to(dtype)
    return _RATIONAL_LINEAR(x, rational.numerator, rational.denominator, rational.variant,
                            input_bias, weight, bias, lowest_peak)


class GRKANLinear(nn.Module):
    r"""GR-KAN layer (paper Eq. 11-13): :math:`y = W\,F(x) + c`.

    .. math::
        y_j = \sum_{i=1}^{d_{in}} w_{ij} F_{\lfloor i / d_g \rfloor}(x_i) + c_j

    ``F`` is a :class:`GroupRational` with ``num_groups`` groups (which must divide
    ``in_features``) initialised to fit ``init``; ``W`` is drawn variance-preserving from the
    stored gain alpha of ``init`` (:func:`init_linear_after_`), ``c`` is zero. ``recompute``
    trades a rational forward in the backward for not keeping F(x) (:func:`rational_linear`).
    """

    def __init__(self, in_features: int, out_features: int, num_groups: int = 8,
                 init: str = "swish", bias: bool = True, order: tuple[int, int] = (5, 4),
                 variant: str = "sum_abs", shared_numerator: bool = True,
                 recompute: bool = False) -> None:
        super().__init__()
        if in_features % num_groups != 0:
            raise ValueError(f"in_features={in_features} is not divisible by num_groups="
                             f"{num_groups}; choose a divisor (num_groups=1 fits any width)")
        self.in_features, self.out_features = in_features, out_features
        self.recompute = recompute
        self.rational = GroupRational(num_groups, order, init, variant, shared_numerator)
        self.linear = nn.Linear(in_features, out_features, bias=bias)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Refit-initialise the rational and redraw the weights from its gain."""
        self.rational.reset_parameters()
        init_linear_after_(self.linear, self.rational)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rational_linear(x, self.rational, self.linear, self.recompute)
