"""Task registry: a task name -> model, data, loss and metric, as a :class:`TaskSpec`.

A *family* (function fitting, PINN, tabular, graph, vision, ...) is one module
``katbench/tasks/<family>.py`` with one builder decorated by :func:`register_family`; each task
of the family is one YAML file ``tasks/<name>.yaml`` whose ``task.family`` names that module.
The builder turns the composed config and the mixer settings into a :class:`TaskSpec`; the one
trainer (:mod:`katbench.train`) does everything else (optimiser, schedule, AMP, evaluation,
checkpoints, logging). Family modules are imported lazily, on first use of their name, so a run
pays only for the family it needs (no PyG import for function fitting, no torchvision for PINN).

Contract of a batch: whatever the loaders yield; the trainer moves it to the device with
:func:`to_device` (tensors, tuples/lists/dicts of them, or any object with ``.to(device)``,
such as a PyG ``Batch``) and hands it untouched to ``loss`` and ``evaluate``.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import nn

__all__ = ["FAMILIES", "TaskSpec", "build_task", "known_families", "register_family",
           "to_device"]


@dataclass
class TaskSpec:
    """Everything the trainer needs for one run of one task.

    ``loss(model, batch) -> scalar tensor`` is the training objective (a PINN puts its ODE
    residual here; a classifier its cross-entropy). ``evaluate(model, loader) -> float``
    returns ``metric`` over a whole loader; it runs under ``torch.no_grad()`` with the model in
    eval mode. ``val`` selects the best epoch (when ``None``, the best epoch is chosen on
    ``test``, and ``metrics.json`` says so). ``export(model, run_dir)``, when given, writes the
    arrays the report plots (predictions on a grid, u(t), ...) into the run folder as ``.npz``
    and returns their paths.
    """

    model: nn.Module
    train: Iterable[Any]
    val: Iterable[Any] | None
    test: Iterable[Any]
    loss: Callable[[nn.Module, Any], torch.Tensor]
    evaluate: Callable[[nn.Module, Iterable[Any]], float]
    metric: str
    higher_is_better: bool
    export: Callable[[nn.Module, Path], list[Path]] | None = None


Builder = Callable[[Any, dict[str, Any]], TaskSpec]
FAMILIES: dict[str, Builder] = {}


def register_family(name: str) -> Callable[[Builder], Builder]:
    """Register ``build(cfg, mixer) -> TaskSpec`` for every task whose ``task.family`` is ``name``.

    ``cfg`` is the whole composed run config (``cfg.task`` holds the task's own settings,
    ``cfg.seed`` the seed); ``mixer`` is a plain dict ``{"name": ..., **kwargs}`` to pass on as
    ``build_mixer(mixer["name"], in_features, hidden, out, **kwargs)``. The builder must be
    deterministic given ``cfg.seed`` (the trainer seeds torch before calling it).
    """

    def decorate(build: Builder) -> Builder:
        if name in FAMILIES and FAMILIES[name] is not build:
            raise ValueError(f"task family {name!r} is registered twice")
        FAMILIES[name] = build
        return build

    return decorate


def known_families() -> list[str]:
    """Names of the family modules shipped in ``katbench/tasks/`` (importing none of them)."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def build_task(cfg: Any) -> TaskSpec:
    """Import the family module named by ``cfg.task.family`` and call its builder."""
    family = str(cfg.task.family)
    if family not in FAMILIES:
        if family not in known_families():
            raise ValueError(f"unknown task family {family!r} in task {cfg.task.name!r}; "
                             f"known families: {', '.join(known_families())}")
        importlib.import_module(f"{__name__}.{family}")
    if family not in FAMILIES:
        raise ValueError(f"katbench/tasks/{family}.py registers no builder; decorate it with "
                         f"@register_family({family!r})")
    mixer = OmegaConf.to_container(cfg.mixer, resolve=True) if OmegaConf.is_config(cfg.mixer) \
        else dict(cfg.mixer)
    return FAMILIES[family](cfg, mixer)


def to_device(batch: Any, device: torch.device) -> Any:
    """Move a batch (tensor, tuple/list/dict of them, or object with ``.to``) to ``device``."""
    if isinstance(batch, torch.Tensor) or hasattr(batch, "to"):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch
