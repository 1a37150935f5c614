"""Image classification with ViT-style models whose block MLP is the mixer (paper section 5.2).

One builder for every vision task: ``task.dataset`` picks the data (``digits``, ``cifar10``,
``cifar100``, ``imagenet``, ``folder``: your own images; :mod:`katbench.data.vision`) with the
``data:`` section (``root``, ``num_workers``, ``augment``, ``mixup``), ``model:`` the transformer
(:func:`katbench.models.vit.vit_mixer`: patch size, width, depth, heads, drop path, attention
init, and the MLP activation of the Table 6 comparison) and the run's mixer fills every block's
MLP, of width ``embed_dim * mlp_ratio`` or, with ``param_budget``, the width solved for it.
The loss is cross-entropy with label smoothing, or soft-target cross-entropy under timm's
Mixup/CutMix (``data.mixup``); the metric is top-1 accuracy in percent.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from katbench.data import vision as data
from katbench.models.budget import hidden_for_budget
from katbench.models.info import count_params
from katbench.models.vit import vit_mixer
from katbench.tasks import TaskSpec, register_family

DATASETS = ("digits", "cifar10", "cifar100", "imagenet", "folder")
# data.mixup: the keywords of katbench.data.vision.mixup_fn
MIXUP_KEYS = {"mixup", "cutmix", "prob", "switch_prob", "label_smoothing"}
MODEL_KEYS = {"patch_size", "embed_dim", "depth", "num_heads", "mlp_ratio", "drop_path_rate",
              "attn_init", "activation", "class_token", "global_pool", "qkv_bias"}


def top1_accuracy(model: nn.Module, loader: Any) -> float:
    """Top-1 accuracy (%) over all ``(images, labels)`` batches of ``loader``."""
    correct, count = 0, 0
    for x, y in loader:
        correct += int((model(x).argmax(-1) == y).sum())
        count += int(y.numel())
    return 100.0 * correct / max(count, 1)


def classification_loss(mix: Any | None, label_smoothing: float):
    """``loss(model, (x, y))``: soft-target CE on Mixup/CutMix batches, else smoothed CE."""
    def loss(model: nn.Module, batch: Any) -> torch.Tensor:
        x, y = batch
        if mix is None:
            return F.cross_entropy(model(x), y, label_smoothing=label_smoothing)
        x, target = mix(x, y)
        return torch.sum(-target * F.log_softmax(model(x), dim=-1), dim=-1).mean()
    return loss


def _plain(section: Any) -> dict[str, Any]:
    if section is None:
        return {}
    return OmegaConf.to_container(section, resolve=True) if OmegaConf.is_config(section) \
        else dict(section)


def _root(d: Any, message: str) -> str:
    """``data.root`` of a task whose images are on disk; ``message`` names the fix if unset."""
    if not d.get("root"):
        raise ValueError(message)
    return str(d["root"])


def load_splits(t: Any, d: dict[str, Any], seed: int) -> data.ImageSplits:
    """Data splits of the ``task:`` section ``t`` with the ``data:`` settings ``d``."""
    dataset = str(t.dataset)
    batch, size = int(t.batch_size), int(t.img_size)
    workers = int(d.get("num_workers", 0))
    augment = d.get("augment") or {}
    if dataset == "digits":
        return data.digits_splits(seed, batch, val_fraction=float(d.get("val_fraction", 0.1)),
                                  img_size=size)
    if dataset in ("cifar10", "cifar100"):
        return data.cifar_splits(dataset, seed, batch, root=d.get("root"), img_size=size,
                                 augment=augment, num_workers=workers)
    if dataset == "imagenet":
        root = _root(d, "task imagenet needs data.root=/path/to/imagenet "
                        "(ImageFolder layout with train/ and val/)")
        return data.imagefolder_splits(root, seed, batch, img_size=size,
                                       augment=augment, num_workers=workers)
    if dataset == "folder":
        root = _root(d, "task images needs data.root=DIR (a folder of class folders, "
                        "DIR/<class>/*.png|jpg)")
        return data.folder_splits(root, seed, batch, img_size=size,
                                  val_fraction=float(d.get("val_fraction", 0.1)),
                                  test_fraction=float(d.get("test_fraction", 0.2)),
                                  split_seed=int(d.get("split_seed", 0)))
    raise ValueError(f"task.dataset={dataset!r} is unknown; use one of {DATASETS}")


@register_family("vision")
def build(cfg: Any, mixer: dict[str, Any]) -> TaskSpec:
    """Data from :mod:`katbench.data.vision`, model :func:`vit_mixer` with the run's mixer."""
    t, d = cfg.task, _plain(cfg.get("data"))
    model_cfg = _plain(cfg.model)
    unknown = sorted(set(model_cfg) - MODEL_KEYS)
    if unknown:
        raise ValueError(f"unknown model key(s) {unknown}; known: {sorted(MODEL_KEYS)}")
    splits = load_splits(t, d, int(cfg.seed))
    name = mixer["name"]
    kwargs = {k: v for k, v in mixer.items() if k != "name"}
    activation = model_cfg.pop("activation", "gelu")
    dim, mlp_ratio = int(model_cfg["embed_dim"]), float(model_cfg.pop("mlp_ratio", 4.0))
    base_hidden = int(dim * mlp_ratio)

    def vit(mixer_name: str, mixer_kwargs: dict[str, Any], hidden: int | None) -> nn.Module:
        # timm sizes the block MLP as int(dim * mlp_ratio): half a unit above gives `hidden`
        ratio = mlp_ratio if hidden is None else (hidden + 0.5) / dim
        return vit_mixer(mixer_name, img_size=splits.img_size, num_classes=splits.num_classes,
                         in_chans=splits.in_chans, mixer_kwargs=mixer_kwargs, mlp_ratio=ratio,
                         activation=activation if mixer_name == "mlp" else "gelu", **model_cfg)

    hidden = hidden_for_budget(cfg.get("param_budget"), name, kwargs,
                               lambda *a: count_params(vit(*a)),
                               base_hidden)
    model = vit(name, kwargs, hidden)
    mix_cfg = dict(d.get("mixup") or {})
    unknown = sorted(set(mix_cfg) - MIXUP_KEYS)
    if unknown:
        raise ValueError(f"unknown data.mixup key(s) {unknown}; known: {sorted(MIXUP_KEYS)}")
    smoothing = float(mix_cfg.pop("label_smoothing", 0.0))
    mix = data.mixup_fn(splits.num_classes, label_smoothing=smoothing, **mix_cfg)
    return TaskSpec(model=model, train=splits.train, val=splits.val, test=splits.test,
                    loss=classification_loss(mix, smoothing), evaluate=top1_accuracy,
                    metric="top1", higher_is_better=True)
