"""Tabular tasks: TabTransformer on the KAT paper's Table 9 tables (binary, ROC AUC) or your own.

Task settings (``tasks/tab_<name>.yaml``): ``task.dataset`` names the table; ``data`` says
where it comes from and how to read it (``openml_id``, ``path``, ``target``, ``kind``,
``positive``, ``categorical`` / ``continuous`` overrides, ``drop``, ``max_rows``); ``split`` the
protocol (``n_folds``, ``fold``, ``val_fraction``, ``split_seed``); ``model`` the TabTransformer.

The run's seed picks the fold (``fold = seed % n_folds``, or ``split.fold`` for every seed) and
seeds the model; the folds themselves depend only on ``split.split_seed``, so every mixer of one
seed sees the same train/val/test rows. The target's kind (``data.kind``: ``binary``, the
benchmark's, ``multiclass``, ``regression`` or ``auto``; :mod:`katbench.data.targets`) sets the
head, loss and metric: binary one logit, cross-entropy, test ROC AUC (``auc``); multiclass one
logit per class, cross-entropy, test ``accuracy``; regression one value, mean squared error on
the target standardised with training statistics, test ``rmse`` in the target's units. The
metric is taken at the best validation epoch; ``export`` stores the test predictions with every
metric of the kind (``test_predictions.npz``: log loss, MAE, ...).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from katbench.data.tabular import (
    SCALINGS,
    EncodedTable,
    TensorBatches,
    encode,
    load_frame,
    split_indices,
    stratified_subset,
)
from katbench.data.targets import HIGHER_IS_BETTER, target_metrics
from katbench.mixers import PER_CHANNEL
from katbench.models.budget import hidden_for_budget, hidden_step
from katbench.models.tabtransformer import TabTransformer, count_parameters
from katbench.tasks import TaskSpec, register_family, to_device
from katbench.tracking import write_npz

log = logging.getLogger(__name__)
METRICS = {"binary": "auc", "multiclass": "accuracy", "regression": "rmse"}   # the selected one


def predict(model: nn.Module, loader: Any, kind: str, scale: tuple[float, float] = (0.0, 1.0)
            ) -> tuple[np.ndarray, np.ndarray]:
    """Predictions and labels over a whole loader: P(positive) for binary, class probabilities
    ``(n, classes)`` for multiclass, values in the target's units (``out * std + mean`` with
    ``scale = (mean, std)``) for regression."""
    preds, labels = [], []
    for batch in loader:
        out = model(batch["x_cat"], batch["x_cont"]).float()
        preds.append(torch.sigmoid(out) if kind == "binary" else
                     out.softmax(-1) if kind == "multiclass" else out * scale[1] + scale[0])
        labels.append(batch["y"])
    return torch.cat(preds).cpu().numpy(), torch.cat(labels).cpu().numpy()


def _export_predictions(test: Any, kind: str, scale: tuple[float, float]) -> Any:
    def export(model: nn.Module, run_dir: Path) -> list[Path]:
        device = next(model.parameters()).device
        with torch.no_grad():
            pred, y = predict(model, (to_device(b, device) for b in test), kind, scale)
        return [write_npz(run_dir / "test_predictions.npz", pred=pred, y=y,
                          **target_metrics(kind, pred, y))]

    return export


def _loss(kind: str, scale: tuple[float, float]) -> Any:
    """``loss(model, batch)`` of the target's kind (see the module docstring)."""
    def loss(model: nn.Module, b: dict[str, torch.Tensor]) -> torch.Tensor:
        out = model(b["x_cat"], b["x_cont"])
        if kind == "binary":
            return F.binary_cross_entropy_with_logits(out, b["y"])
        if kind == "multiclass":
            return F.cross_entropy(out, b["y"])
        return F.mse_loss(out.float(), (b["y"] - scale[0]) / scale[1])

    return loss


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def _head_kwargs(mixer: str, kwargs: dict[str, Any], width: int) -> dict[str, Any]:
    """The head mixer's settings: grkan's groups must divide the head width ``l`` (and so
    ``4l``), which depends on the table; use the largest divisor of both (one rational per
    channel fits any width)."""
    if mixer != "grkan" or kwargs.get("num_groups") == PER_CHANNEL:
        return kwargs
    return {**kwargs, "num_groups": math.gcd(int(kwargs.get("num_groups", 8)), width)}


@register_family("tabular")
def build(cfg: Any, mixer: dict[str, Any]) -> TaskSpec:
    """Table -> encoded features -> fold split -> TabTransformer with ``mixer`` blocks."""
    data, m = _plain(cfg.data), _plain(cfg.model)
    table = _load_table(cfg.task, data)
    kind = table.target.kind
    fold = _fold(table, data, _plain(cfg.split), int(cfg.seed))
    name = mixer["name"]
    kwargs = {k: v for k, v in mixer.items() if k != "name"}
    model = _model(table, m, name, kwargs, cfg.get("param_budget"))
    _announce(cfg.task.name, name, table, fold, count_parameters(model))
    metric = METRICS[kind]

    def loader(rows: np.ndarray, shuffle: bool) -> TensorBatches:
        rows_t = torch.from_numpy(rows)
        return TensorBatches({key: values[rows_t] for key, values in fold.tensors.items()},
                             int(cfg.task.batch_size), shuffle, int(cfg.seed))

    def evaluate(model: nn.Module, rows: Any) -> float:
        return target_metrics(kind, *predict(model, rows, kind, fold.scale))[metric]

    test_loader = loader(fold.test, False)
    return TaskSpec(model=model, train=loader(fold.train, True), val=loader(fold.val, False),
                    test=test_loader, loss=_loss(kind, fold.scale), evaluate=evaluate,
                    metric=metric, higher_is_better=HIGHER_IS_BETTER[metric],
                    export=_export_predictions(test_loader, kind, fold.scale))


def _load_table(task: Any, data: dict[str, Any]) -> EncodedTable:
    """The task's table (shipped, cached, downloaded or the user's file), encoded."""
    if task.dataset is None and not data.get("path"):
        raise ValueError(f"task {task.name} needs data.path=<CSV or Parquet file> and "
                         "data.target=<column>")
    frame, default_target = load_frame(task.dataset, data.get("openml_id"), data.get("path"))
    target = data.get("target") or default_target
    if target is None:
        raise ValueError(f"task {task.name} has no target column; set data.target=<column>")
    return encode(frame, target, data.get("positive"), data.get("categorical") or (),
                  data.get("continuous") or (), data.get("drop") or (),
                  data.get("kind") or "binary")


@dataclass
class _Fold:
    """One fold's rows (indices into ``tensors``), its features and the target's scale."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    tensors: dict[str, torch.Tensor]   # x_cat, x_cont (scaled on train rows), y
    scale: tuple[float, float]         # regression targets: train mean and std


def _fold(table: EncodedTable, data: dict[str, Any], split: dict[str, Any], seed: int) -> _Fold:
    """The rows kept (``data.max_rows``), the seed's fold of them and its scaled features."""
    strata = table.target.strata
    keep = stratified_subset(strata, data.get("max_rows"), int(split["split_seed"]))
    y = table.y[keep]
    n_folds = int(split["n_folds"])
    fold = seed % n_folds if split.get("fold") is None else int(split["fold"])
    train, val, test = split_indices(strata[keep], fold, n_folds, float(split["val_fraction"]),
                                     int(split["split_seed"]))
    scale = ((float(y[train].mean()), float(y[train].std()) or 1.0)
             if table.target.kind == "regression" else (0.0, 1.0))
    scaling = data.get("scaling") or "standard"
    if scaling not in SCALINGS:
        raise ValueError(f"data.scaling={scaling!r}; choose one of {', '.join(SCALINGS)}")
    tensors = {"x_cat": torch.from_numpy(table.x_cat[keep]),
               "x_cont": torch.from_numpy(SCALINGS[scaling](table.x_cont[keep], train)),
               "y": torch.from_numpy(y)}
    return _Fold(train, val, test, tensors, scale)


def _model(table: EncodedTable, m: dict[str, Any], name: str, kwargs: dict[str, Any],
           param_budget: Any) -> TabTransformer:
    """The TabTransformer with ``name`` mixers at the task's widths, or with its hidden width
    solved for ``param_budget`` (:func:`katbench.models.budget.hidden_for_budget`): the head
    mixer's hidden width, the FF blocks' following in proportion (multiples of their groups),
    or without a head mixer the FF blocks' width."""
    width = len(table.cardinalities) * int(m["dim"]) + len(table.cont_names)   # head input
    head_mixer = bool(m["head_mixer"])
    base_ff, base_head = 4 * int(m["dim"]), int(m["head_mults"][0]) * width

    def transformer(mixer_name: str, mixer_kwargs: dict[str, Any],
                    hidden: int | None) -> TabTransformer:
        ff_hidden, head_hidden = base_ff, base_head
        if hidden is not None and head_mixer:
            step = hidden_step(mixer_name, mixer_kwargs)
            ff_hidden = max(step, step * round(hidden * base_ff / base_head / step))
            head_hidden = hidden
        elif hidden is not None:
            ff_hidden = hidden
        return TabTransformer(
            table.cardinalities, len(table.cont_names), mixer_name, mixer_kwargs,
            dim=int(m["dim"]), depth=int(m["depth"]), heads=int(m["heads"]),
            attn_dropout=float(m["attn_dropout"]), ff_dropout=float(m["ff_dropout"]),
            head_mults=tuple(m["head_mults"]), head_mixer=head_mixer,
            cont_norm=str(m.get("cont_norm", "layer")),
            head_mixer_kwargs=_head_kwargs(mixer_name, mixer_kwargs, width),
            outputs=len(table.target.classes) if table.target.kind == "multiclass" else 1,
            ff_hidden=ff_hidden, head_hidden=head_hidden)

    knob_kwargs = _head_kwargs(name, kwargs, width) if head_mixer else kwargs
    hidden = hidden_for_budget(param_budget, name, kwargs,
                               lambda *a: count_parameters(transformer(*a))["total"],
                               base_head if head_mixer else base_ff,
                               step=hidden_step(name, knob_kwargs))
    return transformer(name, kwargs, hidden)


def _announce(task: str, mixer: str, table: EncodedTable, fold: _Fold,
              counts: dict[str, int]) -> None:
    """One line on stdout and in the log: features, rows per split, target, parameters."""
    line = (f"{task}/{mixer}: {len(table.cat_names)} categorical + "
            f"{len(table.cont_names)} continuous features, "
            f"{len(fold.train)}/{len(fold.val)}/{len(fold.test)} rows, "
            f"{table.target.describe()}, params "
            + " ".join(f"{k}={v:,}" for k, v in counts.items()))
    print(line, flush=True)
    log.info(line)
