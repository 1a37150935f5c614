"""Fit safe-Padé rationals to standard activations (paper appendix F) and compute their gains.

For a target g, a variant and an order (m, n), the coefficients minimise
``sum_i (g(x_i) - F(x_i))^2`` on 1000 evenly spaced points of [-3, 3] with Levenberg–Marquardt
(``scipy.optimize.curve_fit(method="lm")``), F = P / Q as in :mod:`katbench.ops.reference`.
The fit is deterministic: a fixed list of starting points (a least-squares polynomial, the
official KAT start, and seeded random draws) is tried and the lowest MSE is kept.

The gain of section 4.4 is ``alpha = E[F(x)^2] / Var[x]`` for ``x ~ N(0, 1)``, integrated with
``scipy.integrate.quad`` against the normal density; GR-KAN draws the weights of the linear layer
after F with variance ``1 / (alpha * d_in)`` so that Eq. 16 holds.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from scipy import integrate, optimize, special

from katbench.init import COEFFICIENTS_PATH, order_key

INTERVAL = (-3.0, 3.0)
NUM_POINTS = 1000
ORDERS: tuple[tuple[int, int], ...] = ((3, 2), (4, 3), (5, 4), (6, 5), (7, 6))
VARIANTS = ("sum_abs", "abs_sum")
LEAKY_RELU_SLOPE = 0.01  # torch.nn.LeakyReLU's default
RANDOM_STARTS = 4


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return special.expit(x)


TARGETS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "identity": lambda x: np.asarray(x, dtype=float),
    "relu": lambda x: np.maximum(x, 0.0),
    "leaky_relu": lambda x: np.where(x >= 0, x, LEAKY_RELU_SLOPE * x),
    "gelu": lambda x: 0.5 * x * (1.0 + special.erf(x / np.sqrt(2.0))),
    "swish": lambda x: x * _sigmoid(x),
    "tanh": np.tanh,
    "sigmoid": _sigmoid,
}


def rational_numpy(x: np.ndarray, numerator: Iterable[float], denominator: Iterable[float],
                   variant: str = "sum_abs") -> np.ndarray:
    """F(x) = P(x) / Q(x) in float64, the formula of :mod:`katbench.ops.reference`.

    P = a_0 + a_1 x + ... + a_m x^m; Q = 1 + sum_k |b_k| |x|^k (``sum_abs``) or
    Q = 1 + |sum_k b_k x^k| (``abs_sum``), k = 1..n.
    """
    x = np.asarray(x, dtype=float)
    a, b = np.asarray(numerator, dtype=float), np.asarray(denominator, dtype=float)
    p = np.polynomial.polynomial.polyval(x, a)
    if variant == "sum_abs":
        inner = np.polynomial.polynomial.polyval(np.abs(x), np.concatenate([[0.0], np.abs(b)]))
    elif variant == "abs_sum":
        inner = np.polynomial.polynomial.polyval(x, np.concatenate([[0.0], b]))
    else:
        raise ValueError(f"unknown variant {variant!r}; use one of {VARIANTS}")
    return p / (1.0 + np.abs(inner))


def _starts(x: np.ndarray, y: np.ndarray, m: int, n: int) -> list[np.ndarray]:
    """Deterministic starting points: polynomial LSQ, official KAT start, seeded random draws."""
    poly = np.polynomial.polynomial.polyfit(x, y, m)
    official = np.zeros(m + 1 + n)
    official[1] = official[m] = 1.0
    rng = np.random.default_rng(0)
    starts = [np.concatenate([poly, np.zeros(n)]), official]
    starts += [rng.normal(0.0, 0.3, m + 1 + n) for _ in range(RANDOM_STARTS)]
    return starts


def fit_rational_coefficients(
        function: str, variant: str = "sum_abs", order: tuple[int, int] = (5, 4),
        warm_start: tuple[Iterable[float], Iterable[float]] | None = None,
) -> tuple[list[float], list[float], float]:
    """Least-squares fit of F to ``TARGETS[function]``; returns (numerator, denominator, mse).

    ``warm_start`` = (numerator, denominator) of a lower order is zero-padded to ``order`` and
    tried first, so a higher order never fits worse than the one below it. For ``sum_abs`` the
    denominator is stored as |b| (F only sees |b_k|).
    """
    if function not in TARGETS:
        raise ValueError(f"unknown function {function!r}; known: {sorted(TARGETS)}")
    m, n = order
    x = np.linspace(*INTERVAL, NUM_POINTS)
    y = TARGETS[function](x)

    def model(xs: np.ndarray, *params: float) -> np.ndarray:
        return rational_numpy(xs, params[:m + 1], params[m + 1:], variant)

    starts = _starts(x, y, m, n)
    if warm_start is not None:
        num0, den0 = (np.asarray(list(c), dtype=float) for c in warm_start)
        if len(num0) > m + 1 or len(den0) > n:
            raise ValueError(f"warm start of order ({len(num0) - 1}, {len(den0)}) is higher "
                             f"than the order {order} being fitted")
        starts.insert(0, np.concatenate([np.pad(num0, (0, m + 1 - len(num0))),
                                         np.pad(den0, (0, n - len(den0)))]))
    best, best_mse = None, np.inf
    for p0 in starts:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # covariance warnings are irrelevant to the fit
            try:
                params, _ = optimize.curve_fit(model, x, y, p0=p0, method="lm", maxfev=4000)
            except RuntimeError:  # no convergence from this start: try the next one
                continue
        mse = float(np.mean((model(x, *params) - y) ** 2))
        # a later start must win clearly, so float noise on exact fits cannot pick the winner
        if mse < best_mse * (1.0 - 1e-6) - 1e-15:
            best, best_mse = params, mse
    if best is None:
        raise RuntimeError(f"no start converged for {function} {variant} {order}")
    numerator, denominator = best[:m + 1], best[m + 1:]
    if variant == "sum_abs":
        denominator = np.abs(denominator)
    return [float(v) for v in numerator], [float(v) for v in denominator], best_mse


def gain(numerator: Iterable[float], denominator: Iterable[float],
         variant: str = "sum_abs") -> float:
    """alpha = E[F(x)^2] / Var[x] for x ~ N(0, 1), by quadrature on each half-line."""
    a, b = list(numerator), list(denominator)

    def integrand(x: float) -> float:
        return float(rational_numpy(x, a, b, variant) ** 2) * np.exp(-0.5 * x * x) / np.sqrt(
            2.0 * np.pi)

    left = integrate.quad(integrand, -np.inf, 0.0, limit=200)[0]
    right = integrate.quad(integrand, 0.0, np.inf, limit=200)[0]
    return left + right


def fit_all(functions: Iterable[str] = tuple(TARGETS), variants: Iterable[str] = VARIANTS,
            orders: Iterable[tuple[int, int]] = ORDERS) -> dict:
    """Fit every (function, variant, order); return the JSON-ready table.

    Orders are fitted from low to high, each warm-started from the one below it.
    """
    table: dict = {}
    for function in functions:
        for variant in variants:
            previous = None
            for order in sorted(orders):
                num, den, mse = fit_rational_coefficients(function, variant, order, previous)
                previous = (num, den)
                table.setdefault(function, {}).setdefault(variant, {})[order_key(order)] = {
                    "numerator": num, "denominator": den, "mse": mse,
                    "gain": gain(num, den, variant)}
    return {
        "about": ("Safe-Pade rationals F = P/Q fitted by Levenberg-Marquardt on "
                  f"{NUM_POINTS} evenly spaced points of {list(INTERVAL)}; gain = E[F(x)^2] / "
                  "Var[x], x ~ N(0,1). Each order is warm-started from the next lower one. "
                  "Written by `python -m katbench.init fit`."),
        "interval": list(INTERVAL), "num_points": NUM_POINTS,
        "leaky_relu_slope": LEAKY_RELU_SLOPE,
        "coefficients": table,
    }


def write_coefficients(table: dict, path: str | Path = COEFFICIENTS_PATH) -> Path:
    """Write the table as indented JSON (atomically: temp file then rename)."""
    path = Path(path)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(table, indent=1) + "\n")
    tmp.replace(path)
    return path
