"""Equal parameter budgets: solve a mixer's hidden width so a model has a target size.

A task opts in with ``param_budget`` (top-level config key): ``mlp`` (the parameter count of
the task's model built with the ``mlp`` mixer at the task's own widths) or a number. Each
family builder then asks :func:`hidden_for_budget` for the hidden width of the run's mixer,
giving it ``count(mixer, kwargs, hidden)``, the trainable parameters of the whole model built
with that hidden width (``hidden=None``: the task's own widths). The count must not decrease
as the width grows (true of every registered mixer: each is affine in its hidden width). The
solver returns the width, among the widths the mixer accepts (multiples of ``num_groups`` for
mixers that take one), whose count is closest to the target; it is within 1% unless the
width's granularity forbids it (e.g. a ``[2, h, 1]`` B-spline KAN grows by 30 parameters per
unit of ``h``, 143% of a ``[2, 5, 1]`` MLP's 21), which the log line says.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from katbench.mixers import PER_CHANNEL, mixer_class

__all__ = ["TOLERANCE", "BudgetSolution", "hidden_for_budget", "hidden_step", "parse_budget",
           "solve_hidden"]

TOLERANCE = 0.01
# (mixer name, mixer keyword arguments, hidden width or None for the task's own widths)
# -> trainable parameters of the model
Count = Callable[[str, dict[str, Any], int | None], int]


def parse_budget(value: Any) -> int | str | None:
    """``param_budget`` as given: ``None`` (off), ``"mlp"`` or a positive parameter count."""
    if value is None or value == "mlp":
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str) and value.replace("_", "").isdigit() and int(value) > 0:
        return int(value)
    raise ValueError(f"param_budget={value!r}; use null (the task's own widths), mlp (the mlp "
                     "mixer's parameter count) or a positive number of parameters")


def hidden_step(mixer: str, kwargs: dict[str, Any]) -> int:
    """The granularity of ``mixer``'s hidden width: its ``num_groups`` (given, else the
    constructor's default) when it takes one, else 1 (also for one rational per channel)."""
    parameter = inspect.signature(mixer_class(mixer)).parameters.get("num_groups")
    if parameter is None:
        return 1
    groups = kwargs.get("num_groups", parameter.default)
    return 1 if groups == PER_CHANNEL else int(groups)


def solve_hidden(count: Callable[[int], int], target: int, step: int = 1,
                 start: int = 1) -> tuple[int, int]:
    """``(hidden, count(hidden))`` for the multiple of ``step`` whose count is closest to
    ``target`` (ties: the smaller width), for a ``count`` that does not decrease with the width.

    Doubles from ``start`` until the count reaches the target, then bisects: O(log) counts.
    """
    counts: dict[int, int] = {}

    def at(units: int) -> int:
        if units not in counts:
            counts[units] = count(units * step)
        return counts[units]

    low, high = 0, max(1, start // step)   # at(low) < target is assumed for no hidden units
    while at(high) < target:
        if low and at(high) == at(low):
            raise ValueError(f"the parameter count stays at {at(high):,} whatever the hidden "
                             f"width, below the budget {target:,}: the model has no mixer")
        low, high = high, 2 * high
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if at(middle) < target else (low, middle)
    best = min((u for u in (low, high) if u >= 1), key=lambda u: (abs(at(u) - target), u))
    return best * step, at(best)


@dataclass(frozen=True)
class BudgetSolution:
    """The solved width of one mixer and how close its model comes to the budget."""

    mixer: str
    hidden: int
    params: int
    target: int
    budget: int | str
    step: int

    @property
    def relative_error(self) -> float:
        return self.params / self.target - 1.0

    def describe(self) -> str:
        """One log line: the budget, the width, the count and, past 1%, why."""
        source = "the mlp mixer's count" if self.budget == "mlp" else "given"
        line = (f"param_budget {self.target:,} ({source}): {self.mixer} hidden {self.hidden} -> "
                f"{self.params:,} parameters ({self.relative_error:+.2%})")
        if abs(self.relative_error) > TOLERANCE:
            unit = "one unit of hidden width" if self.step == 1 else \
                f"one step of hidden width (multiples of num_groups={self.step})"
            line += f"; the closest achievable: {unit} moves the count by more than 1%"
        return line


def hidden_for_budget(budget: Any, mixer: str, kwargs: dict[str, Any], count: Count,
                      start: int = 1, step: int | None = None) -> int | None:
    """The run's hidden width: ``None`` (keep the task's widths) without a budget, else the
    solved width, searched from ``start`` among multiples of ``step`` (default:
    :func:`hidden_step`); its :meth:`BudgetSolution.describe` line is printed to stderr.

    Every count is taken under a forked CPU random state, so the model the task then builds
    gets the same initialisation as it would without the solver.
    """
    budget = parse_budget(budget)
    if budget is None:
        return None
    step = hidden_step(mixer, kwargs) if step is None else step
    with torch.random.fork_rng(devices=[]):
        target = count("mlp", {}, None) if budget == "mlp" else budget
        hidden, params = solve_hidden(lambda h: count(mixer, kwargs, h), target, step, start)
    solution = BudgetSolution(mixer, hidden, params, target, budget, step)
    print(solution.describe(), file=sys.stderr, flush=True)
    return solution.hidden
