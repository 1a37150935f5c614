"""GRKANLinear: one Group-Rational KAN layer, a group-wise rational followed by a linear map."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from katbench.layers.group_rational import GroupRational
from katbench.ops import load_kernels
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


_RATIONAL = torch.ops.katbench.group_rational.default
_RATIONAL_BACKWARD = torch.ops.katbench.group_rational_backward.default


def _run_chain(x: torch.Tensor, variants: tuple[str, ...], params: tuple
               ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """The chain's forward: (output, input of each rational, output of each rational); recorded
    by autograd where grad mode is on (the replay for higher derivatives)."""
    inputs, outputs, h = [], [], x
    for i, variant in enumerate(variants):
        numerator, denominator, weight, bias = params[4 * i:4 * i + 4]
        inputs.append(h)
        outputs.append(_RATIONAL(h, numerator, denominator, variant))
        h = outputs[-1] if weight is None else F.linear(outputs[-1], weight, bias)
    return h, inputs, outputs


def _rows(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1, t.shape[-1])


class _RationalLinearChain(torch.autograd.Function):
    """rational -> linear -> rational -> linear ... (a trailing linear may be missing) as one
    autograd node whose backward lets each rational's backward kernel do more of the work.

    ``params`` holds (numerator, denominator, weight, bias) per rational, weight None for a
    trailing rational. The backward kernel of rational i also sums its dx over the rows, which is
    the bias gradient of linear i-1 (no separate reduction), and, where ``keep[i]`` is False, writes
    F(x) for linear i's weight gradient: the node keeps only each rational's input, and
    recomputing the output costs one write instead of a forward kernel.
    """

    @staticmethod
    def forward(ctx, x, variants, keep, *params):
        output, inputs, outputs = _run_chain(x, variants, params)
        kept = [a if keep[i] and params[4 * i + 2] is not None else None
                for i, a in enumerate(outputs)]
        # (The biases are saved for the replay of higher derivatives only.)
        ctx.save_for_backward(*inputs, *kept, *params)
        ctx.variants, ctx.has_bias = variants, tuple(p is not None for p in params[3::4])
        return output

    @staticmethod
    def backward(ctx, grad_output):
        n = len(ctx.variants)
        saved = ctx.saved_tensors
        inputs, kept, params = saved[:n], saved[n:2 * n], saved[2 * n:]
        if torch.is_grad_enabled():  # create_graph=True: differentiate a replay instead
            return _replay_gradients(ctx, grad_output, inputs[0], params)
        grads: list[torch.Tensor | None] = [None] * len(params)
        grad, bias_grad = grad_output, None
        for i in reversed(range(n)):
            numerator, denominator, weight = params[4 * i:4 * i + 3]
            waiting = None  # linear i's output gradient until its input F(x) is written
            if weight is not None:
                rows = _rows(grad)
                if ctx.has_bias[i]:
                    grads[4 * i + 3] = rows.sum(0) if bias_grad is None else bias_grad
                if kept[i] is not None:
                    grads[4 * i + 2] = rows.t() @ _rows(kept[i])
                else:
                    waiting = rows
                grad = grad @ weight
            feeds_bias = i > 0 and ctx.has_bias[i - 1]
            grad, grads[4 * i], grads[4 * i + 1], output, bias_grad = _RATIONAL_BACKWARD(
                grad, inputs[i], numerator, denominator, ctx.variants[i], waiting is not None,
                feeds_bias)
            if waiting is not None:
                grads[4 * i + 2] = waiting.t() @ _rows(output)
        return grad, None, None, *grads


def _replay_gradients(ctx, grad_output: torch.Tensor, x: torch.Tensor,
                      params: tuple) -> tuple:
    """Gradients that are themselves differentiable (higher derivatives, e.g. a PINN's u''):
    the chain's forward replayed with autograd ops, then differentiated with create_graph."""
    needs = ctx.needs_input_grad
    leaves = (x, None, None, *params)
    wrt = [t for t, need in zip(leaves, needs, strict=True) if need]
    with torch.enable_grad():
        output, _, _ = _run_chain(x, ctx.variants, params)
    found = iter(torch.autograd.grad(output, wrt, grad_output, create_graph=True,
                                     allow_unused=True))
    return tuple(next(found) if need else None for need in needs)


def rational_chain(x: torch.Tensor, layers: list[tuple[GroupRational, nn.Linear | None]],
                   keep: tuple[bool, ...] | None = None) -> torch.Tensor:
    """``linear_k(rational_k(... linear_1(rational_1(x))))`` as one autograd node.

    ``layers`` pairs each rational with the linear after it (``None`` for a trailing rational).
    The result and gradients are those of the plain modules; the backward is cheaper: the bias
    gradient of each linear followed by a rational is summed by that rational's backward kernel.
    ``keep[i] = False`` drops rational i's output after the forward (activation memory) and has
    its backward kernel write it again (one write, no extra kernel). Under autocast all run in
    the autocast dtype, as unfused.
    """
    keep = tuple(keep) if keep is not None else (True,) * len(layers)
    if len(keep) != len(layers):
        raise ValueError(f"rational_chain: keep has {len(keep)} entries for {len(layers)} layers")
    first = layers[0][0]  # later widths are checked by the op itself
    check_arguments(x, first.numerator, first.denominator, first.variant)
    load_kernels()
    device_type = x.device.type
    dtype = (torch.get_autocast_dtype(device_type)
             if device_type in ("cpu", "cuda") and torch.is_autocast_enabled(device_type)
             else None)
    cast = (lambda t: t) if dtype is None else (lambda t: None if t is None else t.to(dtype))
    params: list[torch.Tensor | None] = []
    for rational, linear in layers:
        params += [rational.numerator, rational.denominator,
                   None if linear is None else cast(linear.weight),
                   None if linear is None else cast(linear.bias)]
    variants = tuple(rational.variant for rational, _ in layers)
    return _RationalLinearChain.apply(cast(x), variants, keep, *params)


def rational_linear(x: torch.Tensor, rational: GroupRational, linear: nn.Linear,
                    recompute: bool = False) -> torch.Tensor:
    """``linear(rational(x))``; with ``recompute`` the backward recomputes ``rational(x)``
    instead of keeping it (its backward kernel writes it: one write), so the pair holds one
    activation (``x``) where it held two. See :func:`rational_chain`.
    """
    if not recompute:
        return linear(rational(x))
    return rational_chain(x, [(rational, linear)], keep=(False,))


class GRKANLinear(nn.Module):
    r"""GR-KAN layer (paper Eq. 11-13): :math:`y = W\,F(x) + c`.

    .. math::
        y_j = \sum_{i=1}^{d_{in}} w_{ij} F_{\lfloor i / d_g \rfloor}(x_i) + c_j

    ``F`` is a :class:`GroupRational` with ``num_groups`` groups (which must divide
    ``in_features``) initialised to fit ``init``; ``W`` is drawn variance-preserving from the
    stored gain alpha of ``init`` (:func:`variance_preserving_`), ``c`` is zero. ``recompute``
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
        variance_preserving_(self.linear, self.rational.gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rational_linear(x, self.rational, self.linear, self.recompute)
