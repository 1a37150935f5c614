"""Pure-PyTorch reference of the group-wise rational function (GR-KAN activation).

F(x) = P(x) / Q(x), P(x) = a_0 + a_1 x + ... + a_m x^m evaluated by Horner's rule, with a safe
denominator in one of two forms:

* ``sum_abs`` (the official KAT kernels): Q(x) = 1 + sum_k |b_k| |x|^k
* ``abs_sum`` (the paper's Eq. 9):        Q(x) = 1 + |A(x)|,  A(x) = sum_k b_k x^k

Channel ``i`` of width ``D`` uses coefficient row ``i // (D // g)``; a numerator of one row
is shared by all ``g`` groups (its gradient is summed over them). Everything is vectorised over
groups: coefficients are expanded to per-channel rows once and broadcast over the leading
dimensions. Arithmetic runs in float32 (float64 for float64 inputs) and results are cast back to
the input dtypes. Evaluate a float64 copy of ``x`` to get a reference that never overflows for
finite float32 inputs (|x|^8 <= 1.8e307): the tests do.

The gradients follow the paper's appendix E:
dF/da_j = x^j / Q,  dF/db_k = -F/Q * dQ/db_k,  dF/dx = (P' - F Q') / Q, with sign(0) = 0,
except d|b_k|/db_k, taken as +1 at b_k = 0 so that coefficients initialised to exactly zero
(identity and GELU fits) still receive gradients. Autograd of the differentiable reference uses
PyTorch's abs, whose gradient at 0 is 0: the two differ only at b_k == 0.

This module is the specification the compiled kernels are tested against, and the fallback
implementation when no compiler is available.
"""

from __future__ import annotations

import torch

VARIANTS = ("sum_abs", "abs_sum")


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """Arithmetic dtype of the reference: float32 or better."""
    return torch.promote_types(x.dtype, torch.float32)


def _channel_rows(coefficients: torch.Tensor, width: int, dtype: torch.dtype) -> torch.Tensor:
    """Expand ``(g, k)`` group coefficients to channel rows of shape ``(k, D)``."""
    return coefficients.to(dtype).repeat_interleave(width // coefficients.shape[0], dim=0).t()


def _horner(rows: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Evaluate sum_j rows[j] * x^j for channel rows of shape ``(k, D)`` by Horner's rule."""
    acc = torch.zeros_like(x) + rows[-1]
    for row in rows.flip(0)[1:]:
        acc = acc * x + row
    return acc


def _derivative(rows: torch.Tensor) -> torch.Tensor:
    """Channel rows of the derivative polynomial: (j * c_j) for j >= 1."""
    j = torch.arange(1, rows.shape[0], dtype=rows.dtype, device=rows.device)
    return rows[1:] * j[:, None]


def _denominator_rows(b: torch.Tensor, variant: str) -> torch.Tensor:
    """Coefficient rows (constant term first) of |Q|'s inner polynomial for each variant."""
    rows = b.abs() if variant == "sum_abs" else b
    return torch.cat([torch.zeros_like(rows[:1]), rows])


def _evaluate(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, variant: str):
    """Return (P, Q, s, u) where Q = 1 + |inner(u)|, u = |x| or x, s = sign(inner)."""
    u = x.abs() if variant == "sum_abs" else x
    inner = _horner(_denominator_rows(b, variant), u)
    # sum_abs: inner >= 0, so Q = 1 + inner and its sign factor is 1 (also where inner == 0)
    sign = torch.ones_like(inner) if variant == "sum_abs" else torch.sign(inner)
    return _horner(a, x), 1.0 + inner.abs(), sign, u


def check_arguments(x: torch.Tensor, numerator: torch.Tensor, denominator: torch.Tensor,
                    variant: str, bias: torch.Tensor | None = None) -> None:
    """Validate shapes, dtypes and the variant; raise ValueError/TypeError naming the fix."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; use one of {VARIANTS}")
    for name, t in (("x", x), ("numerator", numerator), ("denominator", denominator)):
        if not t.is_floating_point():
            raise TypeError(
                f"group_rational: {name} must be a floating-point tensor, got {t.dtype}")
    if x.dim() < 1:
        raise ValueError("group_rational: x must have at least one dimension (..., D)")
    if numerator.dim() != 2 or denominator.dim() != 2:
        raise ValueError(
            "group_rational: numerator must be (g, m+1) or (1, m+1) and denominator (g, n); "
            f"got shapes {tuple(numerator.shape)} and {tuple(denominator.shape)}")
    groups = denominator.shape[0]
    if numerator.shape[0] not in (1, groups):
        raise ValueError(
            f"group_rational: numerator has {numerator.shape[0]} groups but denominator has "
            f"{groups}; give the numerator g rows, or one row shared by all groups")
    m, n = numerator.shape[1] - 1, denominator.shape[1]
    if not (0 <= m <= 8 and 1 <= n <= 8):
        raise ValueError(
            f"group_rational: orders (m={m}, n={n}) are outside the kernel's range; "
            "use 0 <= m <= 8 and 1 <= n <= 8")
    width = x.shape[-1]
    if groups == 0 or width % groups != 0:
        raise ValueError(
            f"group_rational: width D={width} is not divisible by g={groups} groups; "
            "choose g that divides D")
    if not (x.device == numerator.device == denominator.device):
        raise ValueError("group_rational: x, numerator and denominator must be on one device")
    if bias is not None and (bias.shape != (width,) or not bias.is_floating_point()
                             or bias.device != x.device):
        raise ValueError(
            f"group_rational: bias must be a floating-point ({width},) tensor on x's device "
            f"(one value per channel), got {tuple(bias.shape)} {bias.dtype} on {bias.device}")


def _shifted(x: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
    return x.to(dtype) if bias is None else x.to(dtype) + bias.to(dtype)


def group_rational_reference(x: torch.Tensor, numerator: torch.Tensor,
                             denominator: torch.Tensor, variant: str = "sum_abs",
                             bias: torch.Tensor | None = None) -> torch.Tensor:
    """Differentiable reference: F(x + bias) per channel group, output in ``x.dtype``."""
    check_arguments(x, numerator, denominator, variant, bias)
    width, dtype = x.shape[-1], compute_dtype(x)
    a, b = _channel_rows(numerator, width, dtype), _channel_rows(denominator, width, dtype)
    p, q, _, _ = _evaluate(_shifted(x, bias, dtype), a, b, variant)
    return (p / q).to(x.dtype)


def _group_sum(per_channel: torch.Tensor, groups: int) -> torch.Tensor:
    """Sum a ``(..., D)`` tensor over leading dims and over the channels of each group -> (g,)."""
    flat = per_channel.reshape(-1, per_channel.shape[-1]).sum(0)
    return flat.view(groups, -1).sum(1)


def group_rational_backward_reference(
        grad_output: torch.Tensor, x: torch.Tensor, numerator: torch.Tensor,
        denominator: torch.Tensor, variant: str = "sum_abs", bias: torch.Tensor | None = None,
        output: bool = False) -> tuple[torch.Tensor, ...]:
    """``katbench::group_rational_backward``: (dx, d numerator, d denominator, d bias,
    F(x + bias)); F is empty unless ``output`` asks for it."""
    grads = group_rational_gradients_reference(grad_output, x, numerator, denominator, variant,
                                               bias)
    forward = (group_rational_reference(x, numerator, denominator, variant, bias) if output
               else x.new_empty(0))
    return (*grads, forward)


def group_rational_gradients_reference(grad_output: torch.Tensor, x: torch.Tensor,
                                       numerator: torch.Tensor, denominator: torch.Tensor,
                                       variant: str = "sum_abs",
                                       bias: torch.Tensor | None = None):
    """Explicit gradients (dx, d numerator, d denominator, d bias) in the dtypes of the inputs
    (d bias, the column sums of dx, empty without a bias)."""
    width = x.shape[-1]
    m, n = numerator.shape[1] - 1, denominator.shape[1]
    dtype = compute_dtype(x)
    a, b = _channel_rows(numerator, width, dtype), _channel_rows(denominator, width, dtype)
    xd, g = _shifted(x, bias, dtype), grad_output.to(dtype)
    p, q, s, u = _evaluate(xd, a, b, variant)
    f = p / q
    inner_rows = _denominator_rows(b, variant)
    dq_dx = s * _horner(_derivative(inner_rows), u)
    if variant == "sum_abs":
        dq_dx = dq_dx * torch.sign(xd)
    grad_x = g * (_horner(_derivative(a), xd) - f * dq_dx) / q if m > 0 else -g * f * dq_dx / q

    g_over_q = g / q
    power = torch.ones_like(xd)
    grad_num = []
    for _ in range(m + 1):
        grad_num.append(_group_sum(g_over_q * power, numerator.shape[0]))
        power = power * xd
    # dQ/db_k = sign(inner) * sign(b_k) * |x|^k (sum_abs) or sign(inner) * x^k (abs_sum)
    coefficient_sign = (torch.where(b < 0, -1.0, 1.0).to(b.dtype) if variant == "sum_abs"
                        else torch.ones_like(b))
    scale = -g_over_q * f * s
    power = u
    grad_den = []
    for k in range(n):
        grad_den.append(_group_sum(scale * power * coefficient_sign[k], denominator.shape[0]))
        power = power * u
    grad_bias = (x.new_empty(0) if bias is None
                 else grad_x.reshape(-1, width).sum(0).to(bias.dtype))
    return (grad_x.to(x.dtype),
            torch.stack(grad_num, 1).to(numerator.dtype),
            torch.stack(grad_den, 1).to(denominator.dtype), grad_bias)
