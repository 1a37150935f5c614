"""Graph family: builder wiring, benchmark metrics and a quick micro-ZINC run through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

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
    assert float(class_averaged_accuracy(logits, labels)) == pytest.approx(100 * (2 / 3 + 1) / 2)
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


@pytest.mark.parametrize("target, split, metric", [("logp", "scaffold", "mae"),
                                                   ("halogen", "random", "auc")])
def test_mol_csv_regression_and_binary(tmp_path, cache, monkeypatch, capsys, target, split,
                                       metric):
    import numpy as np
    import pandas as pd

    from katbench.data import molecules

    monkeypatch.setenv("KATBENCH_CACHE", str(cache))
    path = Path(molecules.__file__).with_name("examples") / "molecules.csv"
    status = main(["task=mol_csv", "mixer=grkan", "profile=quick", f"data.path={path}",
                   f"data.target={target}", f"data.split={split}", f"results_dir={tmp_path}",
                   "tracking.enabled=false", "trainer.progress=none"])
    assert status == 0
    assert "; 76/10/10 molecules, " in capsys.readouterr().err
    run = tmp_path / "runs/mol_csv/grkan/seed0"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["metric"] == metric and metrics["higher_is_better"] == (metric == "auc")
    pred = np.load(run / "test_predictions.npz")
    assert pred["pred"].shape == pred["y"].shape == (10,)
    score = metrics["best"][f"test_{metric}"]
    if metric == "mae":       # in logP units; predicting the mean is ~1.0 off
        mean_error = float(np.abs(pd.read_csv(path).logp - pd.read_csv(path).logp.mean()).mean())
        assert score < 0.85 * mean_error, (score, mean_error)
    else:                     # halogens are atom types: easy to see
        assert score > 0.8 and 0 <= float(pred["accuracy"]) <= 1


def test_padded_pattern_run_and_its_errors(tmp_path, cache, monkeypatch, capsys):
    monkeypatch.setenv("KATBENCH_CACHE", str(cache))
    common = ["task=pattern", "mixer=mlp", "profile=quick", "trainer.epochs=2",
              f"results_dir={tmp_path}", "tracking.enabled=false"]
    assert main([*common, "task.pad_nodes=auto"]) == 0
    metrics = json.loads((tmp_path / "runs/pattern/mlp/seed0/metrics.json").read_text())
    assert metrics["epochs_done"] == 2 and metrics["best"]["test_weighted_acc_small_sbm"] > 0
    assert main([*common, "task.pad_nodes=-3"]) == 2
    assert "task.pad_nodes=-3; use null, auto or a positive number" in capsys.readouterr().err
    assert main([*common, "trainer.compile_mode=fast"]) == 2
    assert "trainer.compile_mode='fast' is invalid; set it to one of" in capsys.readouterr().err
