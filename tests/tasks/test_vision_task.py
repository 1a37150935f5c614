"""Vision family: a quick digits run end to end, and settings errors shown as one line."""

from __future__ import annotations

import json

import pytest

from katbench.run import main

FAST = ["task=digits", "profile=quick", "trainer.epochs=5", "trainer.warmup_epochs=0",
        "trainer.lr=3e-3",
        "model.depth=1", "model.embed_dim=32", "model.num_heads=2", "tracking.enabled=false",
        "trainer.progress=none",
        # the task's Mixup/CutMix and stochastic depth keep 5 epochs of a tiny model near chance
        "data.mixup.mixup=0", "data.mixup.cutmix=0", "model.drop_path_rate=0"]


@pytest.mark.parametrize("mixer", ["mlp", "grkan"])
def test_digits_quick_run_learns(tmp_path, mixer):
    assert main([*FAST, f"mixer={mixer}", f"results_dir={tmp_path}"]) == 0
    metrics = json.loads((tmp_path / "runs" / "digits" / mixer / "seed0" /
                          "metrics.json").read_text())
    assert metrics["metric"] == "top1" and metrics["higher_is_better"]
    assert metrics["best"]["test_top1"] > 25  # chance is 10 %


def test_bad_settings_exit_2(tmp_path, capsys):
    assert main([*FAST, "mixer=mlp", f"results_dir={tmp_path}", "+model.width=3"]) == 2
    assert "unknown model key(s) ['width']" in capsys.readouterr().err
    assert main([*FAST, "mixer=mlp", f"results_dir={tmp_path}", "+data.mixup.alpha=1"]) == 2
    assert ("unknown data.mixup key(s) ['alpha']; known: ['cutmix', 'label_smoothing', "
            "'mixup', 'prob', 'switch_prob']") in capsys.readouterr().err
    assert main(["task=imagenet", "mixer=mlp", f"results_dir={tmp_path}",
                 "tracking.enabled=false"]) == 2
    assert "data.root=/path/to/imagenet" in capsys.readouterr().err
    assert main(["task=images", "mixer=mlp", f"results_dir={tmp_path}",
                 "tracking.enabled=false"]) == 2
    assert "task images needs data.root=DIR" in capsys.readouterr().err


def make_image_folder(root, classes=("circle", "square", "stripes"), per_class=24, size=24):
    """Generated images: bright circles, squares or stripes on dark noise, PNG and JPEG."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    for name in classes:
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
            cy, cx = rng.integers(size // 3, 2 * size // 3, 2)
            r = rng.integers(size // 6, size // 4)
            mask = {"circle": (yy - cy) ** 2 + (xx - cx) ** 2 < r ** 2,
                    "square": (abs(yy - cy) < r) & (abs(xx - cx) < r),
                    "stripes": (xx // 3) % 2 == 0}[name]
            image[mask] = rng.integers(150, 255, 3)
            Image.fromarray(image).save(root / name / f"{i}.{'png' if i % 2 else 'jpg'}")
    return root


def test_images_task_learns_a_generated_folder(tmp_path, capsys):
    root = make_image_folder(tmp_path / "shapes")
    assert main(["task=images", "mixer=grkan", "profile=quick", f"data.root={root}",
                 f"results_dir={tmp_path}", "tracking.enabled=false",
                 "trainer.progress=none"]) == 0
    assert "3 classes (circle, square, stripes)" in capsys.readouterr().err
    metrics = json.loads((tmp_path / "runs/images/grkan/seed0/metrics.json").read_text())
    assert metrics["metric"] == "top1" and metrics["best"]["test_top1"] > 60   # chance: 33 %


def test_image_folder_layouts_give_the_splits(tmp_path, capsys):
    from katbench.data.vision import folder_splits

    flat = make_image_folder(tmp_path / "flat", per_class=10, size=8)
    splits = folder_splits(str(flat), 0, 8, img_size=8)
    sizes = [len(s.loader.dataset) for s in (splits.train, splits.val, splits.test)]
    assert sizes == [21, 3, 6]       # per class of 10: test 2 (20 %), val 1 (10 % of the 8 left)
    nested = tmp_path / "nested"
    make_image_folder(nested / "train", per_class=10, size=8)
    make_image_folder(nested / "val", per_class=4, size=8)
    splits = folder_splits(str(nested), 0, 8, img_size=8)
    sizes = [len(s.loader.dataset) for s in (splits.train, splits.val, splits.test)]
    assert sizes == [27, 3, 12]                   # val/ is the test split; val drawn from train
    x, y = next(iter(splits.train))
    assert x.shape[1:] == (3, 8, 8) and splits.num_classes == 3
