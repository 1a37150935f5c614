"""Image classification data: digits (offline), CIFAR-10/100 (torchvision), ImageFolder roots.

* ``digits``: scikit-learn's bundled 8x8 handwritten digits (1797 real images, 10 classes,
  shipped inside the scikit-learn wheel, so it works offline). A fixed stratified 20% test split
  (the same for every run) and a seed-dependent validation split of the rest; optional bilinear
  upsampling to ``img_size``. Whole splits live in memory as tensors.
* ``cifar10`` / ``cifar100``: torchvision's loaders, downloaded once into
  ``$KATBENCH_CACHE/<name>`` (torchvision checks the archive's MD5); 5000 training images held out
  for validation by a seed-independent permutation; the official test set is the test split.
* ImageFolder (ImageNet): ``<root>/train/<class>/*`` and ``<root>/val/<class>/*``; the val
  folder is the test split (as the paper reports IN-1k val top-1).
* ``folder``: your own images (:func:`folder_splits`), decoded once into memory at a small
  resolution; ``<root>/<class>/*``, or ``<root>/train`` with ``val`` and/or ``test`` beside it.

Training transforms for CIFAR and ImageFolder are timm's ``create_transform`` (random resized
crop, flip, RandAugment, random erasing), evaluation transforms resize + centre crop; Mixup /
CutMix / label smoothing are timm's ``Mixup``, applied on the device in the task's loss.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from katbench.data.cache import cache_root

__all__ = ["CIFAR_STATS", "DIGITS_TEST_FRACTION", "IMAGE_SUFFIXES", "ImageSplits",
           "build_transform", "cifar_splits", "digits_splits", "folder_splits",
           "imagefolder_splits", "mixup_fn"]

DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0  # the test split never changes with the run seed
CIFAR_VAL_SIZE = 5000
SPLITS_ORDER = ("train", "val", "test")
CIFAR_SPLIT_SEED = 0
CIFAR_STATS = {"cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
               "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))}
IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


@dataclass
class ImageSplits:
    """Loaders of one image classification dataset and the shape the model must accept."""

    train: Any
    val: Any | None
    test: Any
    num_classes: int
    in_chans: int
    img_size: int


class EpochLoader:
    """A ``DataLoader`` that advances its ``DistributedSampler``'s epoch on every pass.

    Under DDP each epoch must reshuffle differently on every rank; the one trainer iterates the
    loader once per epoch, so ``__iter__`` calls ``set_epoch`` itself.
    """

    def __init__(self, loader: DataLoader) -> None:
        self.loader, self.epoch = loader, 0

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        sampler = self.loader.sampler
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(self.epoch)
        self.epoch += 1
        return iter(self.loader)


def _loader(dataset: Dataset, batch_size: int, *, train: bool, seed: int,
            num_workers: int = 0) -> EpochLoader:
    """Shuffled, even-sized batches for training (Mixup needs even batches); ordered for eval."""
    sampler = None
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        from torch.utils.data.distributed import DistributedSampler

        sampler = DistributedSampler(dataset, shuffle=train, seed=seed, drop_last=train)
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=train and sampler is None,
                        sampler=sampler, drop_last=train and len(dataset) > batch_size,
                        num_workers=num_workers, generator=generator,
                        pin_memory=torch.cuda.is_available(),
                        persistent_workers=num_workers > 0)
    return EpochLoader(loader)


def _stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, ...]:
    """Indices (rest, held_out): ``fraction`` of every class held out, chosen by ``seed``."""
    rng = np.random.default_rng(seed)
    held = []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        held.append(idx[: int(round(fraction * len(idx)))])
    held_out = np.sort(np.concatenate(held))
    return np.setdiff1d(np.arange(len(labels)), held_out), held_out


def digits_splits(seed: int, batch_size: int, *, val_fraction: float = 0.1, img_size: int = 8,
                  eval_batch_size: int = 512) -> ImageSplits:
    """scikit-learn's 8x8 digits as ``(x, y)`` batches, ``x`` of shape ``(B, 1, s, s)``.

    Pixels (0..16) are scaled to [0, 1] and standardised with the training split's mean and
    standard deviation; ``img_size > 8`` upsamples bilinearly.
    """
    from sklearn.datasets import load_digits

    if img_size < 8:
        raise ValueError(f"task.img_size={img_size} is smaller than the 8x8 digits; use >= 8")
    if not 0 < val_fraction < 1:
        raise ValueError(f"task.val_fraction={val_fraction} must be in (0, 1)")
    data = load_digits()
    images = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = np.asarray(data.target)
    rest, test = _stratified_split(labels, DIGITS_TEST_FRACTION, DIGITS_SPLIT_SEED)
    within_train, within_val = _stratified_split(labels[rest], val_fraction, seed)
    train, val = rest[within_train], rest[within_val]
    mean, std = images[train].mean(), images[train].std()
    images = (images - mean) / std
    if img_size != 8:
        images = F.interpolate(images, size=(img_size, img_size), mode="bilinear",
                               align_corners=False)
    y = torch.as_tensor(labels, dtype=torch.long)

    def subset(idx: np.ndarray) -> TensorDataset:
        idx_t = torch.as_tensor(idx)
        return TensorDataset(images[idx_t], y[idx_t])

    return ImageSplits(
        train=_loader(subset(train), batch_size, train=True, seed=seed),
        val=_loader(subset(val), eval_batch_size, train=False, seed=seed),
        test=_loader(subset(test), eval_batch_size, train=False, seed=seed),
        num_classes=10, in_chans=1, img_size=img_size)


def _posterize_keeping_zero_bits(img: Any, bits_to_keep: int, **kwargs: Any) -> Any:
    """timm's posterize, with Pillow's old answer for 0 bits kept (a black image): RandAugment's
    increasing posterize (``inc1``, the DeiT recipe) asks for 0 bits at magnitude 10, which
    Pillow >= 11 rejects, so training crashed at random once a sampled magnitude reached it."""
    from PIL import Image
    from timm.data import auto_augment

    if bits_to_keep >= 1:
        return auto_augment.posterize(img, bits_to_keep, **kwargs)
    return Image.new(img.mode, img.size)


def _allow_zero_bit_posterize() -> None:
    """Point timm's posterize operations at :func:`_posterize_keeping_zero_bits` (once)."""
    from timm.data import auto_augment

    for name, op in auto_augment.NAME_TO_OP.items():
        if op is auto_augment.posterize:
            auto_augment.NAME_TO_OP[name] = _posterize_keeping_zero_bits


def build_transform(img_size: int, training: bool, augment: Mapping[str, Any],
                    mean: tuple[float, ...], std: tuple[float, ...]) -> Any:
    """timm's ``create_transform`` with the recipe's augmentation keys.

    ``augment`` keys (all optional): ``auto_augment`` (e.g. ``rand-m9-mstd0.5-inc1``, the DeiT
    RandAugment 9/0.5), ``re_prob`` (random erasing), ``scale`` (random-resized-crop area range),
    ``hflip``, ``color_jitter``, ``interpolation``, ``crop_pct`` (evaluation centre crop).
    """
    from timm.data import create_transform

    known = {"auto_augment", "re_prob", "scale", "hflip", "color_jitter", "interpolation",
             "crop_pct"}
    unknown = sorted(set(augment) - known)
    if unknown:
        raise ValueError(f"unknown task.augment key(s) {unknown}; known: {sorted(known)}")
    a = dict(augment)
    interpolation = a.pop("interpolation", "bicubic")
    crop_pct = a.pop("crop_pct", None)
    if not training:
        return create_transform(img_size, is_training=False, interpolation=interpolation,
                                mean=mean, std=std, crop_pct=crop_pct)
    if "scale" in a:
        a["scale"] = tuple(a["scale"])
    if a.get("auto_augment"):
        _allow_zero_bit_posterize()
    return create_transform(img_size, is_training=True, interpolation=interpolation, mean=mean,
                            std=std, re_mode="pixel", re_count=1, **a)


def cifar_splits(name: str, seed: int, batch_size: int, *, root: str | None = None,
                 img_size: int = 32, augment: Mapping[str, Any] | None = None,
                 num_workers: int = 4, download: bool = True,
                 eval_batch_size: int = 512) -> ImageSplits:
    """CIFAR-10/100 via torchvision: 45000 train / 5000 val (fixed) / 10000 test images."""
    import torchvision

    if name not in CIFAR_STATS:
        raise ValueError(f"unknown CIFAR dataset {name!r}; use one of {sorted(CIFAR_STATS)}")
    cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
    path = Path(root) if root else cache_root(name)
    mean, std = CIFAR_STATS[name]
    train_tf = build_transform(img_size, True, augment or {}, mean, std)
    eval_tf = build_transform(img_size, False, {"crop_pct": 1.0}, mean, std)
    try:
        train_full = cls(str(path), train=True, download=download, transform=train_tf)
    except (RuntimeError, OSError) as err:
        raise ValueError(f"{name} is not in {path} and could not be downloaded ({err}); run "
                         f"once online or set task.data_root to a folder holding it") from err
    val_full = cls(str(path), train=True, download=False, transform=eval_tf)
    test = cls(str(path), train=False, download=False, transform=eval_tf)
    order = np.random.default_rng(CIFAR_SPLIT_SEED).permutation(len(train_full))
    val_idx, train_idx = order[:CIFAR_VAL_SIZE].tolist(), order[CIFAR_VAL_SIZE:].tolist()
    kw = {"seed": seed, "num_workers": num_workers}
    return ImageSplits(
        train=_loader(Subset(train_full, train_idx), batch_size, train=True, **kw),
        val=_loader(Subset(val_full, val_idx), eval_batch_size, train=False, **kw),
        test=_loader(test, eval_batch_size, train=False, **kw),
        num_classes=len(train_full.classes), in_chans=3, img_size=img_size)


def imagefolder_splits(root: str, seed: int, batch_size: int, *, img_size: int = 224,
                       augment: Mapping[str, Any] | None = None, num_workers: int = 8,
                       eval_batch_size: int = 256) -> ImageSplits:
    """``<root>/train`` for training and ``<root>/val`` as the test split (no validation split)."""
    from torchvision.datasets import ImageFolder

    base = Path(root).expanduser()
    if not ((base / "train").is_dir() and (base / "val").is_dir()):
        raise ValueError(f"task.data_root={root!r} has no train/ and val/ class folders; set "
                         "task.data_root=/path/to/imagenet (ImageFolder layout)")
    mean, std = IMAGENET_STATS
    train = ImageFolder(str(base / "train"), build_transform(img_size, True, augment or {},
                                                               mean, std))
    eval_aug = {k: v for k, v in (augment or {}).items() if k in ("interpolation", "crop_pct")}
    test = ImageFolder(str(base / "val"), build_transform(img_size, False, eval_aug, mean, std))
    if train.classes != test.classes:
        raise ValueError(f"{base}/train and {base}/val have different class folders")
    kw = {"seed": seed, "num_workers": num_workers}
    return ImageSplits(train=_loader(train, batch_size, train=True, **kw), val=None,
                       test=_loader(test, eval_batch_size, train=False, **kw),
                       num_classes=len(train.classes), in_chans=3, img_size=img_size)


def _class_files(folder: Path) -> dict[str, list[Path]]:
    """``{class: image paths}`` of ``folder/<class>/**`` (hidden files ignored); a
    ``ValueError`` naming the fix for no class folders, one class, an empty class or a file that
    is not an image."""
    if not folder.is_dir():
        raise ValueError(f"data.root={folder} is not a folder; pass a folder of class folders "
                         "(DIR/<class>/*.png|jpg)")
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    classes = sorted(p for p in entries if p.is_dir())
    if not classes:
        found = f" ({len(entries)} files directly in it)" if entries else " (it is empty)"
        raise ValueError(f"{folder} has no class folders{found}; put each class's images in "
                         f"{folder}/<class>/")
    if len(classes) < 2:
        raise ValueError(f"{folder} has one class folder ({classes[0].name}); classification "
                         f"needs at least two: add {folder}/<another class>/ with its images")
    files = {c.name: sorted(f for f in c.rglob("*") if f.is_file()
                            and not any(part.startswith(".") for part in f.relative_to(c).parts))
             for c in classes}
    empty = [name for name, fs in files.items() if not fs]
    if empty:
        raise ValueError(f"class folder {folder / empty[0]} has no images; add some or remove it")
    others = [f for fs in files.values() for f in fs if f.suffix.lower() not in IMAGE_SUFFIXES]
    if others:
        named = ", ".join(str(f.relative_to(folder)) for f in others[:3])
        raise ValueError(f"{len(others)} files in {folder} are not images ({named}"
                         f"{', ...' if len(others) > 3 else ''}); remove them or move them out "
                         f"(images: {' '.join(IMAGE_SUFFIXES)})")
    return files


def _read_images(paths: list[Path], img_size: int, root: Path) -> torch.Tensor:
    """``(n, 3, s, s)`` float RGB images in [0, 1], each resized (bilinear) to ``s x s``."""
    from PIL import Image

    arrays, bad = [], []
    for path in paths:
        try:
            with Image.open(path) as image:
                arrays.append(np.asarray(image.convert("RGB").resize(
                    (img_size, img_size), Image.Resampling.BILINEAR)))
        except (OSError, ValueError):    # PIL's UnidentifiedImageError is an OSError
            bad.append(str(path.relative_to(root)))
    if bad:
        raise ValueError(f"{len(bad)} files in {root} cannot be read as images "
                         f"({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}); replace or "
                         "remove them")
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255.0


def folder_splits(root: str, seed: int, batch_size: int, *, img_size: int = 32,
                  val_fraction: float = 0.1, test_fraction: float = 0.2, split_seed: int = 0,
                  eval_batch_size: int = 256) -> ImageSplits:
    """Your own images as in-memory ``(x, y)`` batches, ``x`` of shape ``(B, 3, s, s)``.

    Layouts: ``root/<class>/*`` (every split drawn from it), or ``root/train/<class>/*`` with
    ``root/val`` and/or ``root/test``. The test split is ``root/test``, else ``root/val`` (as
    ImageNet reports val), else ``test_fraction`` of each class of the training images; the
    validation split is ``root/val`` when ``root/test`` exists too, else ``val_fraction`` of
    each class of the remaining training images. Drawn splits depend only on ``split_seed``, so
    every mixer and seed is tested on the same images. Images are converted to RGB, resized to
    ``img_size`` (no crop) and standardised per channel with the training split's statistics.
    """
    base = Path(root).expanduser()
    if not base.is_dir():
        raise ValueError(f"data.root={root} does not exist; pass a folder of class folders "
                         "(DIR/<class>/*.png|jpg)")
    named = {s: base / s for s in ("train", "val", "test") if (base / s).is_dir()}
    train_dir = named.get("train", base)
    files = _class_files(train_dir)
    classes = sorted(files)
    paths = [f for c in classes for f in files[c]]
    labels = np.array([i for i, c in enumerate(classes) for _ in files[c]])
    held = _split_folders(named, classes, train_dir)
    _draw_missing_splits(held, paths, labels, {"test": test_fraction, "val": val_fraction},
                         split_seed)
    sets = _standardised_sets(held, img_size, base)
    print(f"images: {len(classes)} classes ({', '.join(classes[:8])}"
          f"{', ...' if len(classes) > 8 else ''}) in {base}, train/val/test "
          f"{'/'.join(str(len(sets[s])) for s in SPLITS_ORDER)} at {img_size}x{img_size}",
          file=sys.stderr, flush=True)
    return ImageSplits(
        train=_loader(sets["train"], batch_size, train=True, seed=seed),
        val=_loader(sets["val"], eval_batch_size, train=False, seed=seed),
        test=_loader(sets["test"], eval_batch_size, train=False, seed=seed),
        num_classes=len(classes), in_chans=3, img_size=img_size)


Split = tuple[list[Path], np.ndarray]  # image paths and their class indices


def _split_folders(named: dict[str, Path], classes: list[str], train_dir: Path) -> dict[str, Split]:
    """The splits given as folders beside ``train/``: ``val`` and ``test``, or ``val`` as the
    test split when there is no ``test`` (as ImageNet reports val); none without ``train/``."""
    if "train" not in named:
        return {}
    sources = ({s: named[s] for s in ("val", "test") if s in named} if "test" in named
               else {"test": named["val"]} if "val" in named else {})
    held = {}
    for split, folder in sources.items():
        other = _class_files(folder)
        if sorted(other) != classes:
            raise ValueError(f"{folder} has class folders {sorted(other)} but {train_dir} has "
                             f"{classes}; use the same class folders")
        held[split] = ([f for c in classes for f in other[c]],
                       np.array([i for i, c in enumerate(classes) for _ in other[c]]))
    return held


def _draw_missing_splits(held: dict[str, Split], paths: list[Path], labels: np.ndarray,
                         fractions: dict[str, float], split_seed: int) -> None:
    """Fill ``held`` with the test, then the validation split (each a stratified ``fractions``
    of what is left of the training images) where no folder gave them, and ``train``."""
    index = np.arange(len(paths))
    for split, fraction in fractions.items():
        if split in held:
            continue
        if not 0 < fraction < 1:
            raise ValueError(f"data.{split}_fraction={fraction} must be in (0, 1)")
        within, out = _stratified_split(labels[index], fraction, split_seed)
        held[split] = ([paths[i] for i in index[out]], labels[index[out]])
        index = index[within]
    held["train"] = ([paths[i] for i in index], labels[index])


def _standardised_sets(held: dict[str, Split], img_size: int,
                       root: Path) -> dict[str, TensorDataset]:
    """Each split's images, read and standardised per channel with the training split's
    statistics, as a ``TensorDataset`` of (image, class)."""
    images = {s: _read_images(held[s][0], img_size, root) for s in SPLITS_ORDER}
    mean = images["train"].mean((0, 2, 3), keepdim=True)
    std = images["train"].std((0, 2, 3), keepdim=True).clamp_min(1e-3)
    return {s: TensorDataset((images[s] - mean) / std, torch.as_tensor(held[s][1]))
            for s in SPLITS_ORDER}


def mixup_fn(num_classes: int, *, mixup: float = 0.0, cutmix: float = 0.0, prob: float = 1.0,
             switch_prob: float = 0.5, label_smoothing: float = 0.0) -> Any | None:
    """timm ``Mixup`` (batch-wise Mixup/CutMix with smoothed one-hot targets), or ``None`` if off.

    The returned callable maps ``(x, y)`` to ``(mixed x, soft targets)`` and needs even batch
    sizes (training loaders drop the last odd batch).
    """
    if mixup <= 0 and cutmix <= 0:
        return None
    from timm.data import Mixup

    return Mixup(mixup_alpha=mixup, cutmix_alpha=cutmix, prob=prob, switch_prob=switch_prob,
                 label_smoothing=label_smoothing, num_classes=num_classes)
