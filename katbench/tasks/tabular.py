"""Tabular binary classification (KAT paper appendix A, Table 9): TabTransformer, ROC AUC.

Task settings (``tasks/tab_<name>.yaml``): ``task.dataset`` names the table; ``data`` says
where it comes from and how to read it (``openml_id``, ``path``, ``target``, ``positive``,
``categorical`` / ``continuous`` overrides, ``drop``, ``max_rows``); ``split`` the protocol
(``n_folds``, ``val_fraction``, ``split_seed``); ``model`` the TabTransformer settings.

The run's seed picks the fold (``fold = seed % n_folds``) and seeds the model; the folds
themselves depend only on ``split.split_seed``, so every mixer of one seed sees the same
train/val/test rows. The metric is test ROC AUC at the best validation epoch; ``export`` also
stores the test predictions with accuracy and log loss (``test_predictions.npz``).
"""

from __future__ import annotations

import io
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from katbench.data.tabular import (
    SCALINGS,
    TensorBatches,
    encode,
    load_frame,
    split_indices,
    stratified_subset,
)
from katbench.models.tabtransformer import TabTransformer, count_parameters
from katbench.tasks import TaskSpec, register_family, to_device
from katbench.tracking import atomic_write_bytes

log = logging.getLogger(__name__)


def predict(model: nn.Module, loader: Any) -> tuple[np.ndarray, np.ndarray]:
    """Positive-class probabilities and labels over a whole loader."""
    probs, labels = [], []
    for batch in loader:
        probs.append(torch.sigmoid(model(batch["x_cat"], batch["x_cont"])).float().cpu())
        labels.append(batch["y"].cpu())
    return torch.cat(probs).numpy(), torch.cat(labels).numpy()


def roc_auc(model: nn.Module, loader: Any) -> float:
    """ROC AUC of the model's scores over ``loader`` (0.5 = chance)."""
    from sklearn.metrics import roc_auc_score

    prob, y = predict(model, loader)
    return float(roc_auc_score(y, prob))


def classification_metrics(prob: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """ROC AUC, accuracy at threshold 0.5 and log loss of predicted probabilities."""
    from sklearn.metrics import log_loss, roc_auc_score

    return {"auc": float(roc_auc_score(y, prob)),
            "accuracy": float(np.mean((prob >= 0.5) == (y >= 0.5))),
            "log_loss": float(log_loss(y, np.clip(prob, 1e-7, 1 - 1e-7), labels=[0, 1]))}


def _export_predictions(test: Any) -> Any:
    def export(model: nn.Module, run_dir: Path) -> list[Path]:
        device = next(model.parameters()).device
        with torch.no_grad():
            prob, y = predict(model, (to_device(b, device) for b in test))
        buffer = io.BytesIO()
        np.savez(buffer, prob=prob, y=y, **classification_metrics(prob, y))
        atomic_write_bytes(run_dir / "test_predictions.npz", buffer.getvalue())
        return [run_dir / "test_predictions.npz"]

    return export


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def _head_kwargs(mixer: str, kwargs: dict[str, Any], width: int) -> dict[str, Any]:
    """The head mixer's settings: grkan's groups must divide the head width ``l`` (and so
    ``4l``), which depends on the table; use the largest divisor of both."""
    if mixer != "grkan":
        return kwargs
    return {**kwargs, "num_groups": math.gcd(int(kwargs.get("num_groups", 8)), width)}


@register_family("tabular")
def build(cfg: Any, mixer: dict[str, Any]) -> TaskSpec:
    """Table -> encoded features -> fold split -> TabTransformer with ``mixer`` blocks."""
    data, split, m = _plain(cfg.data), _plain(cfg.split), _plain(cfg.model)
    seed = int(cfg.seed)
    frame, default_target = load_frame(cfg.task.dataset, data.get("openml_id"),
                                       data.get("path"))
    target = data.get("target") or default_target
    if target is None:
        raise ValueError(f"no target column for {cfg.task.dataset!r}; set data.target=<column>")
    table = encode(frame, target, data.get("positive"), data.get("categorical") or (),
                   data.get("continuous") or (), data.get("drop") or ())
    keep = stratified_subset(table.y, data.get("max_rows"), int(split["split_seed"]))
    y = table.y[keep]
    train, val, test = split_indices(y, seed % int(split["n_folds"]), int(split["n_folds"]),
                                     float(split["val_fraction"]), int(split["split_seed"]))
    x_cat = torch.from_numpy(table.x_cat[keep])
    scaling = data.get("scaling") or "standard"
    if scaling not in SCALINGS:
        raise ValueError(f"data.scaling={scaling!r}; choose one of {', '.join(SCALINGS)}")
    x_cont = torch.from_numpy(SCALINGS[scaling](table.x_cont[keep], train))
    y_t = torch.from_numpy(y)

    def loader(rows: np.ndarray, shuffle: bool) -> TensorBatches:
        rows_t = torch.from_numpy(rows)
        return TensorBatches({"x_cat": x_cat[rows_t], "x_cont": x_cont[rows_t],
                              "y": y_t[rows_t]}, int(cfg.task.batch_size), shuffle, seed)

    name = mixer["name"]
    kwargs = {k: v for k, v in mixer.items() if k != "name"}
    width = len(table.cardinalities) * int(m["dim"]) + len(table.cont_names)
    model = TabTransformer(table.cardinalities, len(table.cont_names), name, kwargs,
                           dim=int(m["dim"]), depth=int(m["depth"]), heads=int(m["heads"]),
                           attn_dropout=float(m["attn_dropout"]),
                           ff_dropout=float(m["ff_dropout"]), head_mults=tuple(m["head_mults"]),
                           head_mixer=bool(m["head_mixer"]),
                           cont_norm=str(m.get("cont_norm", "layer")),
                           head_mixer_kwargs=_head_kwargs(name, kwargs, width))
    counts = count_parameters(model)
    line = (f"{cfg.task.name}/{name}: {len(table.cat_names)} categorical + "
            f"{len(table.cont_names)} continuous features, {len(train)}/{len(val)}/{len(test)} "
            f"rows, params " + " ".join(f"{k}={v:,}" for k, v in counts.items()))
    print(line, flush=True)
    log.info(line)
    test_loader = loader(test, False)
    return TaskSpec(model=model, train=loader(train, True), val=loader(val, False),
                    test=test_loader,
                    loss=lambda mod, b: F.binary_cross_entropy_with_logits(
                        mod(b["x_cat"], b["x_cont"]), b["y"]),
                    evaluate=roc_auc, metric="auc", higher_is_better=True,
                    export=_export_predictions(test_loader))
