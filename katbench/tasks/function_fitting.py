"""Function fitting (KAT paper appendix B, Table 11): a [2, 5, 1] network regresses f(x, y).

Full batch: the train loader is one batch of ``n_train`` points, so an epoch is one Adam step,
as in the paper (1000 epochs, lr 1e-3). Validation points pick the best epoch; the metric is the
MSE on ``n_test`` held-out points. Train/validation points depend on the run seed; the test
points are the same for every run, so seeds and mixers are compared on one test set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from katbench.data.functions import FUNCTIONS, grid, sample
from katbench.models.small import mixer_net
from katbench.tasks import TaskSpec, register_family
from katbench.tracking import write_npz

TEST_SEED = 2**31 - 1


def mse(model: nn.Module, loader: Any) -> float:
    """Mean squared error over all points of ``loader`` (batches of ``(inputs, targets)``)."""
    total, count = 0.0, 0
    for x, y in loader:
        total += float(F.mse_loss(model(x), y, reduction="sum"))
        count += y.numel()
    return total / count


def _export_surface(function: str, n: int) -> Any:
    def export(model: nn.Module, run_dir: Path) -> list[Path]:
        x, y, true = grid(function, n)
        device = next(model.parameters()).device
        with torch.no_grad():
            pred = model(torch.stack([x, y], -1).reshape(-1, 2).to(device)).reshape(n, n)
        return [write_npz(run_dir / "surface.npz", x=x.numpy(), y=y.numpy(), true=true.numpy(),
                          pred=pred.cpu().numpy(), formula=np.array(FUNCTIONS[function].formula))]

    return export


@register_family("function_fitting")
def build(cfg: Any, mixer: dict[str, Any]) -> TaskSpec:
    """Data from :mod:`katbench.data.functions`, model :class:`MixerNet` of ``task.widths``
    (hidden width solved for ``param_budget`` when set)."""
    t = cfg.task
    seed = int(cfg.seed)
    train = [sample(t.function, int(t.n_train), seed=2 * seed)]
    val = [sample(t.function, int(t.n_val), seed=2 * seed + 1)]
    test = [sample(t.function, int(t.n_test), seed=TEST_SEED)]
    kwargs = {k: v for k, v in mixer.items() if k != "name"}
    model = mixer_net(list(t.widths), mixer["name"], kwargs, cfg.get("param_budget"))
    return TaskSpec(model=model, train=train, val=val, test=test,
                    loss=lambda m, b: F.mse_loss(m(b[0]), b[1]), evaluate=mse,
                    metric="mse", higher_is_better=False,
                    export=_export_surface(t.function, int(t.grid_size)))
