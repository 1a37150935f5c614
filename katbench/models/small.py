"""Small mixer networks for function fitting and PINNs, built only from ``build_mixer``.

A width list ``[w0, w1, ..., w2k]`` becomes ``k`` chained mixers, mixer ``i`` mapping
``w[2i] -> w[2i+1] -> w[2i+2]``: ``[2, 5, 1]`` is one mixer (the appendix-B fitting network:
Linear-act-Linear for ``mlp``, two B-spline KAN layers for ``kan``, two rational+linear layers
for ``grkan``), ``[1, h, h, h, 1]`` is two. There is no second GR-KAN implementation here.
:func:`mixer_net` builds one for a task, its hidden widths solved for a parameter budget if
the task sets one.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from katbench.mixers import build_mixer
from katbench.models.budget import hidden_for_budget
from katbench.models.info import count_params


class MixerNet(nn.Module):
    """Chained mixers over ``widths`` (odd length >= 3), mapping ``(..., w0) -> (..., w_last)``."""

    def __init__(self, widths: list[int], mixer: str, **mixer_kwargs: Any) -> None:
        super().__init__()
        if len(widths) < 3 or len(widths) % 2 == 0 or min(widths) < 1:
            raise ValueError(f"widths={widths} must have odd length >= 3 and positive entries, "
                             "e.g. [2, 5, 1] (one mixer) or [1, 32, 32, 32, 1] (two)")
        self.widths = list(widths)
        self.blocks = nn.ModuleList(
            build_mixer(mixer, widths[i], widths[i + 1], widths[i + 2], **mixer_kwargs)
            for i in range(0, len(widths) - 2, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


def with_hidden(widths: list[int], hidden: int | None) -> list[int]:
    """``widths`` with every mixer's hidden width (the odd positions) set to ``hidden``."""
    return list(widths) if hidden is None else [hidden if i % 2 else w
                                                for i, w in enumerate(widths)]


def mixer_net(widths: list[int], mixer: str, mixer_kwargs: dict[str, Any],
              param_budget: Any = None) -> MixerNet:
    """``MixerNet(widths, mixer)``, or, with a ``param_budget`` (:mod:`katbench.models.budget`),
    with every mixer's hidden width set to the width solved for that budget."""
    def count(name: str, kwargs: dict[str, Any], hidden: int | None) -> int:
        return count_params(MixerNet(with_hidden(widths, hidden), name, **kwargs))

    hidden = hidden_for_budget(param_budget, mixer, mixer_kwargs, count,
                               start=max(widths[1::2], default=1))
    return MixerNet(with_hidden(widths, hidden), mixer, **mixer_kwargs)
