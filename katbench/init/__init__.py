"""Fitted initialisation of GR-KAN rationals: coefficients and variance-preserving gains.

``rational_init("gelu", "sum_abs", (5, 4))`` reads the committed table
``rational_coefficients.json`` (written by ``python -m katbench.init fit``, see
:mod:`katbench.init.fit`) and returns a :class:`RationalInit` holding the numerator
(a_0..a_m), the denominator (b_1..b_n), the fit MSE on [-3, 3] and the gain
``alpha = E[F(x)^2] / Var[x]`` for ``x ~ N(0, 1)`` (paper section 4.4, Table 3).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

__all__ = ["COEFFICIENTS_PATH", "RationalInit", "available", "order_key", "rational_init"]

COEFFICIENTS_PATH = Path(__file__).with_name("rational_coefficients.json")


@dataclass(frozen=True)
class RationalInit:
    """One fitted rational: coefficients, fit error and gain alpha."""

    function: str
    variant: str
    order: tuple[int, int]
    numerator: tuple[float, ...]
    denominator: tuple[float, ...]
    mse: float
    gain: float


def order_key(order: tuple[int, int]) -> str:
    """JSON key of an order (m, n): ``"m/n"``."""
    m, n = order
    return f"{int(m)}/{int(n)}"


@lru_cache(maxsize=4)
def _table(path: str) -> dict:
    return json.loads(Path(path).read_text())["coefficients"]


def available(path: str | Path = COEFFICIENTS_PATH) -> dict[str, dict[str, list[str]]]:
    """``{function: {variant: [order keys]}}`` of the fitted table."""
    return {f: {v: sorted(orders) for v, orders in by_variant.items()}
            for f, by_variant in _table(str(path)).items()}


def rational_init(function: str, variant: str = "sum_abs", order: tuple[int, int] = (5, 4),
                  path: str | Path = COEFFICIENTS_PATH) -> RationalInit:
    """Fitted coefficients and gain of ``function`` for ``variant`` and ``order`` = (m, n).

    Raises ``ValueError`` naming the known functions, variants or orders when one is unknown;
    refit with ``python -m katbench.init fit`` to add orders.
    """
    table = _table(str(path))
    if function not in table:
        raise ValueError(f"unknown init function {function!r}; known: {sorted(table)}")
    if variant not in table[function]:
        raise ValueError(f"unknown variant {variant!r} for {function!r}; known: "
                         f"{sorted(table[function])}")
    key = order_key(order)
    if key not in table[function][variant]:
        raise ValueError(
            f"no fitted order {tuple(order)} for {function!r}/{variant}; known orders (m/n): "
            f"{sorted(table[function][variant])}; add it with `python -m katbench.init fit`")
    entry = table[function][variant][key]
    return RationalInit(function, variant, (int(order[0]), int(order[1])),
                        tuple(entry["numerator"]), tuple(entry["denominator"]),
                        float(entry["mse"]), float(entry["gain"]))
