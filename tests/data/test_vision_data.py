"""Vision data: digits splits, timm transforms on real shipped images, Mixup, ImageFolder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import sklearn.datasets
import torch

from katbench.data.vision import build_transform, digits_splits, imagefolder_splits, mixup_fn

SAMPLE_IMAGES = Path(sklearn.datasets.__file__).parent / "images"  # china.jpg, flower.jpg


def _labels(loader) -> torch.Tensor:
    return torch.cat([y for _, y in loader])


def test_digits_splits_sizes_and_fixed_test():
    a, b = digits_splits(0, 64), digits_splits(1, 64)
    n_test = len(a.test.loader.dataset)
    assert n_test == 359 and len(a.val.loader.dataset) == 143  # 20 % and 10 % per class
    assert n_test + len(a.val.loader.dataset) + len(a.train.loader.dataset) == 1797
    assert torch.equal(_labels(a.test), _labels(b.test))  # same test set for every seed
    assert not torch.equal(a.val.loader.dataset.tensors[0], b.val.loader.dataset.tensors[0])
    x, y = next(iter(a.train))
    assert x.shape == (64, 1, 8, 8) and y.dtype == torch.long
    assert (a.num_classes, a.in_chans, a.img_size) == (10, 1, 8)
    up = digits_splits(0, 8, img_size=16)
    assert next(iter(up.test))[0].shape[-2:] == (16, 16)
    with pytest.raises(ValueError, match="smaller than the 8x8"):
        digits_splits(0, 8, img_size=4)


def test_train_batches_even_and_reshuffled():
    s = digits_splits(0, 64)
    first = [y for _, y in s.train]
    second = [y for _, y in s.train]
    assert all(len(y) == 64 for y in first)  # last odd batch dropped (Mixup needs even)
    assert not torch.equal(first[0], second[0])


def test_transforms_on_shipped_images():
    from PIL import Image

    image = Image.open(SAMPLE_IMAGES / "china.jpg").convert("RGB")
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    augment = {"auto_augment": "rand-m9-mstd0.5-inc1", "re_prob": 0.25, "crop_pct": 0.875}
    train = build_transform(64, True, augment, mean, std)
    evaluate = build_transform(64, False, {"crop_pct": 0.875}, mean, std)
    torch.manual_seed(0)
    a, b = train(image), train(image)
    assert a.shape == (3, 64, 64) and not torch.equal(a, b)  # random augmentation
    e1, e2 = evaluate(image), evaluate(image)
    assert e1.shape == (3, 64, 64) and torch.equal(e1, e2)  # deterministic evaluation
    assert abs(e1.mean().item()) < 2
    with pytest.raises(ValueError, match="unknown task.augment"):
        build_transform(64, True, {"mixup": 0.8}, mean, std)


def test_imagefolder_from_shipped_images(tmp_path):
    for split in ("train", "val"):
        for name in ("china", "flower"):
            folder = tmp_path / split / name
            folder.mkdir(parents=True)
            for k in range(2):
                shutil.copy(SAMPLE_IMAGES / f"{name}.jpg", folder / f"{k}.jpg")
    s = imagefolder_splits(str(tmp_path), 0, 2, img_size=32, num_workers=0,
                           augment={"auto_augment": "rand-m9-mstd0.5-inc1", "re_prob": 0.25})
    assert s.num_classes == 2 and s.val is None
    x, y = next(iter(s.train))
    assert x.shape == (2, 3, 32, 32)
    assert sorted(_labels(s.test).tolist()) == [0, 0, 1, 1]
    with pytest.raises(ValueError, match="no train/ and val/"):
        imagefolder_splits(str(tmp_path / "train"), 0, 2)


def test_mixup_soft_targets():
    assert mixup_fn(10) is None
    mix = mixup_fn(10, mixup=0.8, cutmix=1.0, label_smoothing=0.1)
    x, y = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    mixed, target = mix(x, y)
    assert mixed.shape == x.shape and target.shape == (4, 10)
    assert torch.allclose(target.sum(-1), torch.ones(4))
    assert target.min() > 0  # label smoothing spreads mass over every class


def test_randaugment_posterize_at_full_magnitude_keeps_no_bits_without_crashing():
    """The DeiT RandAugment (``inc1``) asks posterize for 0 bits at magnitude 10, which Pillow
    >= 11 rejects; the transform gives a black image there, as Pillow used to."""
    from PIL import Image
    from timm.data.auto_augment import NAME_TO_OP

    build_transform(32, True, {"auto_augment": "rand-m9-mstd0.5-inc1"}, (0.5,) * 3, (0.5,) * 3)
    image = Image.new("RGB", (8, 8), (200, 120, 30))
    assert NAME_TO_OP["PosterizeIncreasing"](image, 0).getextrema() == ((0, 0),) * 3
    assert NAME_TO_OP["Posterize"](image, 4).getpixel((0, 0)) == (192, 112, 16)
