"""Vision family: a quick digits run end to end, and settings errors shown as one line."""

from __future__ import annotations

import json

import pytest

from katbench.run import main

FAST = ["task=digits", "profile=quick", "trainer.epochs=5", "trainer.warmup_epochs=0",
        "trainer.lr=3e-3",
        "model.depth=1", "model.embed_dim=32", "model.num_heads=2", "tracking.enabled=false",
        "trainer.progress=none"]


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
    assert main(["task=imagenet", "mixer=mlp", f"results_dir={tmp_path}",
                 "tracking.enabled=false"]) == 2
    assert "data.root=/path/to/imagenet" in capsys.readouterr().err
