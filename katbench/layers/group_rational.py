"""GroupRational: the learnable group-wise rational activation of GR-KAN (paper section 4.3)."""

from __future__ import annotations

import torch
from torch import nn

from katbench.init import rational_init
from katbench.ops import group_rational, load_kernels

# ``init`` value for Xavier-drawn coefficients instead of a fitted function (paper Table 8).
RANDOM_INIT = "random"


class GroupRational(nn.Module):
    r"""Group-wise safe Padé activation on the last dimension of ``(..., D)`` inputs.

    .. math::
        F_j(x) = \frac{a_0 + a_1 x + \dots + a_m x^m}{1 + \sum_{k=1}^n |b_{j,k}|\,|x|^k}
        \quad (\texttt{sum\_abs}) \qquad
        F_j(x) = \frac{a_0 + \dots + a_m x^m}{1 + |\sum_{k=1}^n b_{j,k} x^k|}
        \quad (\texttt{abs\_sum})

    Channel ``i`` of ``D`` uses group ``j = i // (D / g)``, so ``num_groups`` must divide ``D``
    (``num_groups=1`` fits any width; the op raises a ``ValueError`` naming D and g otherwise).
    The numerator is shared by all groups (one ``(1, m+1)`` parameter, the paper's choice) unless
    ``shared_numerator=False`` (``(g, m+1)``, the per-group ablation); the denominator is
    ``(g, n)``. Both start from the rational fitted to ``init`` (see :mod:`katbench.init`), or
    with ``init="random"`` are drawn Xavier-uniform, each coefficient matrix as a ``(rows,
    cols)`` weight (the paper's "Random" row of Table 8). Any real coefficients are safe: both
    denominators are ``>= 1``.
    """

    def __init__(self, num_groups: int = 8, order: tuple[int, int] = (5, 4),
                 init: str = "gelu", variant: str = "sum_abs",
                 shared_numerator: bool = True) -> None:
        super().__init__()
        if num_groups < 1:
            raise ValueError(f"num_groups={num_groups} must be >= 1")
        self.num_groups = int(num_groups)
        self.order = (int(order[0]), int(order[1]))
        self.init = init
        self.variant = variant
        self.shared_numerator = bool(shared_numerator)
        # None for a random init; raises on unknown names
        self.fitted = None if init == RANDOM_INIT else rational_init(init, variant, self.order)
        m, n = self.order
        self.numerator = nn.Parameter(torch.empty(1 if shared_numerator else num_groups, m + 1))
        self.denominator = nn.Parameter(torch.empty(num_groups, n))
        self.reset_parameters()
        load_kernels()  # build/load now, not inside the first (possibly compiled) forward

    @property
    def gain(self) -> float:
        """alpha = E[F(x)^2] / Var[x] of the initial F for x ~ N(0, 1); a random init has
        none (its next linear layer keeps PyTorch's init, :func:`init_linear_after_`)."""
        if self.fitted is None:
            raise ValueError(f"GroupRational(init={RANDOM_INIT!r}) has no fitted gain; give it "
                             "a fitted function (e.g. init='gelu') for variance-preserving use")
        return self.fitted.gain

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Copy the fitted coefficients of ``init`` into every group, or draw them (random)."""
        if self.fitted is None:
            nn.init.xavier_uniform_(self.numerator)
            nn.init.xavier_uniform_(self.denominator)
            return
        self.numerator.copy_(torch.tensor(self.fitted.numerator).expand_as(self.numerator))
        self.denominator.copy_(torch.tensor(self.fitted.denominator).expand_as(self.denominator))

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """F(x), or F(x + bias) with the ``(D,)`` bias of a linear layer before it (whose
        gradient the backward kernel sums: pass the layer's bias here and leave it out there)."""
        return group_rational(x, self.numerator, self.denominator, self.variant, bias)

    def extra_repr(self) -> str:
        return (f"num_groups={self.num_groups}, order={self.order}, init={self.init!r}, "
                f"variant={self.variant!r}, shared_numerator={self.shared_numerator}")
