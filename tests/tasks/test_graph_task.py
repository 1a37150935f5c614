"""Graph family: builder wiring, benchmark metrics and a quick micro-ZINC run through the CLI."""

from __future__ import annotations

import json

import pytest
import torch
from omegaconf import OmegaConf

from katbench.data.graph import CLUSTER, PATTERN, MicroZINC
from katbench.run import main, tasks_dir
from katbench.tasks.graph import class_averaged_accuracy, stand_in, weighted_cross_entropy


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def test_task_files_hold_the_published_generator_settings():
    for task, published in (("pattern", PATTERN), ("cluster", CLUSTER)):
        t = OmegaConf.load(tasks_dir() / f"{task}.yaml").task
        assert OmegaConf.to_container(t.generator) == published
        assert stand_in(t) is None
        quick = OmegaConf.merge(t, OmegaConf.load(tasks_dir() / f"{task}.yaml").profiles.quick
                                .task)
        assert stand_in(quick) == "small_sbm"
    zinc = OmegaConf.load(tasks_dir() / "zinc.yaml")
    assert stand_in(zinc.task) is None
    assert zinc.profiles.quick.task.dataset == "micro_zinc" and stand_in(
        OmegaConf.merge(zinc.task, zinc.profiles.quick.task)) == "micro_zinc"


def test_weighted_cross_entropy_and_class_averaged_accuracy():
    labels = torch.tensor([0, 0, 0, 1])
    logits = torch.tensor([[2.0, 0.0], [2.0, 0.0], [0.0, 2.0], [0.0, 2.0]])
    # class 0 has 3 of 4 nodes: weight 1/4; class 1 weight 3/4 (benchmark: (V - n_c) / V)
    ref = torch.nn.functional.cross_entropy(logits, labels, weight=torch.tensor([0.25, 0.75]))
    assert torch.allclose(weighted_cross_entropy(logits, labels), ref)
    assert class_averaged_accuracy(logits, labels) == pytest.approx(100 * (2 / 3 + 1) / 2)
    absent = weighted_cross_entropy(torch.zeros(2, 3), torch.tensor([0, 1]))
    assert torch.isfinite(absent)                                  # class 2 absent: weight 0


def test_quick_zinc_run_beats_the_training_mean(tmp_path, cache, monkeypatch, capsys):
    monkeypatch.setenv("KATBENCH_CACHE", str(cache))
    status = main(["task=zinc", "mixer=mlp", "profile=quick", "trainer.epochs=4",
                   f"results_dir={tmp_path}", "tracking.enabled=false"])
    assert status == 0
    assert "parameters, FFN hidden 64 (data: micro_zinc stand-in)" in capsys.readouterr().err
    metrics = json.loads((tmp_path / "runs/zinc/mlp/seed0/metrics.json").read_text())
    assert metrics["metric"] == "mae_micro_zinc" and metrics["params"] == 46529
    train_mean = MicroZINC("train", 8).y.mean()
    baseline = float((MicroZINC("test", 8).y - train_mean).abs().mean())
    assert metrics["best"]["test_mae_micro_zinc"] < 0.8 * baseline, (metrics["best"], baseline)


def test_unknown_dataset_and_bad_budget_are_one_line_errors(tmp_path, capsys):
    assert main(["task=zinc", "mixer=mlp", "task.dataset=qm9", f"results_dir={tmp_path}",
                 "tracking.enabled=false"]) == 2
    assert "task.dataset='qm9'" in capsys.readouterr().err
    assert main(["task=zinc", "mixer=kan", "profile=quick", "param_budget=half",
                 f"results_dir={tmp_path}", "tracking.enabled=false"]) == 2
    assert "param_budget='half'; use null" in capsys.readouterr().err
