"""Graph family (KAT paper appendix A, Table 10): the Graph Transformer of Dwivedi & Bresson
(2020) on ZINC (graph regression) and PATTERN / CLUSTER (node classification); only the
feed-forward blocks change with the mixer.

``task.ffn_hidden`` is the original FFN's hidden width; with ``param_budget: mlp`` (the graph
tasks set it) every other mixer's hidden width is solved so that its model has the original's
parameter count (~500k; :mod:`katbench.models.budget`). The count is printed at build time.
Metrics follow the benchmark: ZINC test MAE (L1 loss); PATTERN / CLUSTER the class-averaged
accuracy in percent (mean recall over the classes present in a batch, averaged over batches),
trained with cross-entropy weighted by each batch's inverse class frequency. A run on a
stand-in (micro-ZINC, or SBM graphs generated with other than the published settings) gets the
metric name ``<metric>_<stand-in>`` so the report never sets it beside the paper's number.

``task.dataset: csv`` is your own molecules (``tasks/mol_csv.yaml``, :mod:`katbench.data.molecules`,
settings in ``data:``): ZINC-style graphs and a graph-level output, a regression target trained
with L1 loss on the target standardised with training statistics (test ``mae`` in the target's
units) or a binary one trained with cross-entropy (test ROC ``auc``); ``export`` stores the test
predictions with every metric of the kind (``test_predictions.npz``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from katbench.data.graph import (
    CLUSTER,
    PATTERN,
    SPLITS,
    ZINC_ATOMS,
    ZINC_BONDS,
    GraphLoader,
    load_split,
)
from katbench.data.targets import Target, target_metrics
from katbench.mixers import build_mixer
from katbench.models.budget import hidden_for_budget
from katbench.models.graph_transformer import GraphTransformer, count_parameters
from katbench.tasks import TaskSpec, register_family, to_device
from katbench.tracking import write_npz

# dataset -> (node types, outputs, published generator settings or None)
DATASETS: dict[str, tuple[int, int, dict[str, Any] | None]] = {
    "zinc": (len(ZINC_ATOMS), 1, None), "micro_zinc": (len(ZINC_ATOMS), 1, None),
    "pattern": (3, 2, PATTERN), "cluster": (7, 6, CLUSTER),
    "pyg_pattern": (3, 2, None), "pyg_cluster": (7, 6, None), "csv": (len(ZINC_ATOMS), 1, None)}


def mae(model: nn.Module, loader: Any, scale: tuple[float, float] = (0.0, 1.0)) -> float:
    """Mean absolute error over all graphs of ``loader`` of the outputs mapped back to the
    target's units (``out * std + mean`` with ``scale = (mean, std)``)."""
    total, count = torch.zeros(()), 0
    for batch in loader:
        total = total.to(batch.y.device) + (model(batch) * scale[1] + scale[0] - batch.y
                                            ).abs().sum()
        count += batch.y.numel()
    return float(total) / count


def predict(model: nn.Module, loader: Any, target: Target, scale: tuple[float, float]
            ) -> tuple[np.ndarray, np.ndarray]:
    """P(positive) (binary) or values in the target's units (regression), and the labels."""
    preds, labels = [], []
    for batch in loader:
        out = model(batch).float()
        preds.append(torch.sigmoid(out) if target.kind == "binary" else
                     out * scale[1] + scale[0])
        labels.append(batch.y)
    return torch.cat(preds).cpu().numpy(), torch.cat(labels).cpu().numpy()


def _molecules(cfg: Any) -> tuple[dict[str, Any], Target]:
    """Splits and target of ``data:`` (``tasks/mol_csv.yaml``)."""
    from katbench.data.molecules import molecule_splits

    d = OmegaConf.to_container(cfg.data, resolve=True)
    if not d.get("path"):
        raise ValueError("task mol_csv needs data.path=<CSV or Parquet file> with "
                         "data.smiles=<column> and data.target=<column>")
    mols = molecule_splits(str(d["path"]), d.get("smiles"), d.get("target"),
                           kind=str(d["kind"]), positive=d.get("positive"),
                           split=str(d["split"]), val_fraction=float(d["val_fraction"]),
                           test_fraction=float(d["test_fraction"]),
                           split_seed=int(d["split_seed"]),
                           max_invalid_fraction=float(d["max_invalid_fraction"]),
                           pe_dim=int(cfg.task.pe_dim))
    return mols.splits, mols.target


def _molecule_spec(y: torch.Tensor, test: Any, target: Target) -> dict[str, Any]:
    """Loss, metric and export of a user's molecules (see the module docstring), given the
    training targets ``y`` (their mean and std standardise a regression target)."""
    binary = target.kind == "binary"
    scale = (0.0, 1.0) if binary else (float(y.mean()), float(y.std()) or 1.0)
    metric = "auc" if binary else "mae"

    def loss(m: nn.Module, b: Any) -> torch.Tensor:
        out = m(b)
        if binary:
            return F.binary_cross_entropy_with_logits(out, b.y)
        return F.l1_loss(out, (b.y - scale[0]) / scale[1])

    def evaluate(m: nn.Module, loader: Any) -> float:
        if not binary:
            return mae(m, loader, scale)
        return target_metrics("binary", *predict(m, loader, target, scale))["auc"]

    def export(m: nn.Module, run_dir: Path) -> list[Path]:
        device = next(m.parameters()).device
        with torch.no_grad():
            pred, labels = predict(m, (to_device(b, device) for b in test), target, scale)
        return [write_npz(run_dir / "test_predictions.npz", pred=pred, y=labels,
                          **target_metrics(target.kind, pred, labels))]

    return {"loss": loss, "evaluate": evaluate, "metric": metric, "higher_is_better": binary,
            "export": export}


def weighted_cross_entropy(logits: torch.Tensor, labels: torch.Tensor,
                           node_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy with class weights ``(V - n_c) / V`` from the batch's class counts ``n_c``
    (classes absent from the batch get weight 0), as in the benchmark; over the rows where
    ``node_mask`` is 1 when given (a padded batch), without leaving the device."""
    if node_mask is None:
        node_mask = torch.ones_like(labels, dtype=logits.dtype)
    counts = _class_counts(labels, logits.shape[1], logits.dtype, node_mask)
    total = node_mask.sum()
    weight = ((total - counts) / total * (counts > 0))[labels] * node_mask
    return (F.cross_entropy(logits, labels, reduction="none") * weight).sum() / weight.sum()


def _class_counts(labels: torch.Tensor, classes: int, dtype: torch.dtype,
                  where: torch.Tensor | None = None) -> torch.Tensor:
    """Per class, how many ``labels`` (those with ``where`` true) it has; unlike ``bincount``
    it does not wait for the device to learn the output size."""
    ones = torch.ones_like(labels, dtype=dtype) if where is None else where.to(dtype)
    return torch.zeros(classes, dtype=dtype, device=labels.device).index_add_(0, labels, ones)


def class_averaged_accuracy(logits: torch.Tensor, labels: torch.Tensor,
                            node_mask: torch.Tensor | None = None) -> torch.Tensor:
    """100 x mean over the classes present in ``labels`` of that class's recall (a 0-d tensor
    on the logits' device); over the rows where ``node_mask`` is 1 when given."""
    classes = logits.shape[1]
    real = torch.ones_like(labels, dtype=torch.bool) if node_mask is None else node_mask > 0
    counts = _class_counts(labels, classes, torch.float32, real)
    correct = _class_counts(labels, classes, torch.float32, (logits.argmax(-1) == labels) & real)
    present = counts > 0
    return 100.0 * (correct / counts.clamp(min=1)).sum() / present.sum()


def sbm_accuracy(model: nn.Module, loader: Any) -> float:
    """Class-averaged accuracy of each batch, averaged over batches (the benchmark's protocol)."""
    scores = torch.stack([class_averaged_accuracy(model(b), b.y, b.node_mask) for b in loader])
    return float(scores.mean())


def pad_nodes(setting: Any, data: dict[str, Any]) -> int | None:
    """``task.pad_nodes``: null (batches of real nodes only), ``auto`` (the largest graph of any
    split) or a number of rows per graph (:class:`~katbench.data.graph.GraphLoader`)."""
    if setting is None:
        return None
    if setting == "auto":
        return max(int(g.num_nodes) for split in data.values() for g in split)
    if isinstance(setting, int) and not isinstance(setting, bool) and setting > 0:
        return setting
    raise ValueError(f"task.pad_nodes={setting!r}; use null, auto or a positive number of "
                     "rows per graph")


def stand_in(t: Any) -> str | None:
    """Why a task's data is not the benchmark's (``None`` when it is)."""
    if t.dataset == "micro_zinc":
        return "micro_zinc"
    published = DATASETS[t.dataset][2]
    overrides = OmegaConf.to_container(t.generator, resolve=True) if "generator" in t else {}
    if published is not None and any(published.get(k) != v for k, v in overrides.items()):
        return "small_sbm"
    return None


@register_family("graph")
def build(cfg: Any, mixer: dict[str, Any]) -> TaskSpec:
    """Graph Transformer of ``task.{dim,layers,heads,pe_dim}`` on ``task.dataset``."""
    t = cfg.task
    if t.dataset not in DATASETS:
        raise ValueError(f"task.dataset={t.dataset!r}; use one of {', '.join(DATASETS)}")
    regression = DATASETS[t.dataset][1] == 1
    if t.get("flex_attention", False) and regression:
        raise ValueError(f"task.flex_attention=true: {t.name}'s molecules have bond features, "
                         "which take the attention over the edge list; set it for PATTERN and "
                         "CLUSTER only")
    data, target = _load_data(cfg)
    pad = pad_nodes(t.get("pad_nodes"), data)
    loaders = {s: GraphLoader(data[s], int(t.batch_size), shuffle=s == "train", pad_nodes=pad)
               for s in SPLITS}
    model = _model(cfg, mixer)
    label = stand_in(t)
    print(f"graph_transformer[{t.name}/{mixer['name']}]: {count_parameters(model)} parameters, "
          f"FFN hidden {model.ffn_hidden}" + (f" (data: {label} stand-in)" if label else "")
          + (f"; {'/'.join(str(len(data[s])) for s in SPLITS)} molecules, "
             f"{target.describe()}" if target else ""), file=sys.stderr)
    splits = {"model": model, "train": loaders["train"], "val": loaders["val"],
              "test": loaders["test"]}
    if target is not None:
        return TaskSpec(**splits, **_molecule_spec(torch.cat([g.y for g in data["train"]]),
                                                   loaders["test"], target))
    metric = "mae" if regression else "weighted_acc"
    if regression:
        def loss(m: nn.Module, b: Any) -> torch.Tensor:
            return F.l1_loss(m(b), b.y)
    else:
        def loss(m: nn.Module, b: Any) -> torch.Tensor:
            return weighted_cross_entropy(m(b), b.y, b.node_mask)
    return TaskSpec(**splits, loss=loss, evaluate=mae if regression else sbm_accuracy,
                    metric=f"{metric}_{label}" if label else metric,
                    higher_is_better=not regression)


def _load_data(cfg: Any) -> tuple[dict[str, Any], Target | None]:
    """Every split of ``task.dataset`` (generated with the published settings updated by
    ``task.generator``), and the target of your own molecules (``csv``; else None)."""
    t = cfg.task
    if t.dataset == "csv":
        return _molecules(cfg)
    published = DATASETS[t.dataset][2]
    params = None
    if published is not None:
        params = {**published, **OmegaConf.to_container(t.get("generator") or {}, resolve=True)}
    return ({s: load_split(t.dataset, s, int(t.pe_dim), params, int(t.data_seed))
             for s in SPLITS}, None)


def _model(cfg: Any, mixer: dict[str, Any]) -> GraphTransformer:
    """The Graph Transformer with ``mixer`` in its feed-forward blocks, their hidden width
    solved for ``param_budget`` where the task sets one."""
    t = cfg.task
    node_types, outputs, _ = DATASETS[t.dataset]
    regression = outputs == 1
    name, kwargs = mixer["name"], {k: v for k, v in mixer.items() if k != "name"}

    def transformer(mixer_name: str, mixer_kwargs: dict[str, Any],
                    hidden: int | None) -> GraphTransformer:
        return GraphTransformer(
            node_types, outputs, lambda i, h, o: build_mixer(mixer_name, i, h, o, **mixer_kwargs),
            dim=int(t.dim), layers=int(t.layers), heads=int(t.heads), pe_dim=int(t.pe_dim),
            ffn_hidden=int(t.ffn_hidden) if hidden is None else hidden,
            node_level=not regression, num_edge_types=len(ZINC_BONDS) if regression else None,
            flex_attention=bool(t.get("flex_attention", False)),
            pe_sign_flip=str(t.get("pe_sign_flip", "batch")))

    hidden = hidden_for_budget(cfg.get("param_budget"), name, kwargs,
                               lambda *a: count_parameters(transformer(*a)), int(t.ffn_hidden))
    return transformer(name, kwargs, hidden)
