"""Tabular tasks end to end through the CLI: every mixer learns a shipped table; own files."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from katbench.run import main, task_names


def test_fifteen_table9_tasks_with_paper_numbers():
    from katbench.report import paper_values

    tasks = [t for t in task_names() if t.startswith("tab_") and t != "tab_csv"]
    assert len(tasks) == 15
    paper = paper_values()
    assert all(paper[t]["metric"] == "test_auc" for t in tasks)
    mean_kat = np.mean([paper[t]["values"]["grkan"] for t in tasks])
    assert abs(mean_kat - 0.837) < 0.001  # Table 9's average row


def test_short_run_per_mixer_beats_chance(tmp_path, capsys):
    status = main(["task=tab_qsar_bio", "mixer=mlp,kan,grkan", "profile=quick",
                   f"results_dir={tmp_path}", "tracking.enabled=false", "trainer.progress=none"])
    assert status == 0
    out = capsys.readouterr().out
    for mixer in ("mlp", "kan", "grkan"):
        assert f"tab_qsar_bio/{mixer}: 0 categorical + 41 continuous" in out
        run = tmp_path / "runs" / "tab_qsar_bio" / mixer / "seed0"
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["best"]["test_auc"] > 0.75, (mixer, metrics["best"])
        pred = np.load(run / "test_predictions.npz")
        assert pred["y"].shape == pred["pred"].shape == (211,)
        assert 0.6 < float(pred["accuracy"]) <= 1 and 0 < float(pred["log_loss"]) < 1


def test_own_csv_with_categoricals(tmp_path):
    rng = np.random.default_rng(0)
    colour = rng.choice(["red", "green", "blue"], 600)
    size = rng.normal(size=600)
    label = np.where(2 * (colour == "red") + size > 1, "yes", "no")  # needs the category
    path = tmp_path / "mine.csv"
    pd.DataFrame({"colour": colour, "size": size, "label": label}).to_csv(path, index=False)
    status = main(["task=tab_shrutime", "mixer=mlp", f"results_dir={tmp_path}",
                   f"data.path={path}", "data.target=label", "data.positive=yes",
                   "data.drop=[]", "model.depth=1", "task.batch_size=32", "trainer.epochs=10",
                   "tracking.enabled=false", "trainer.progress=none", "trainer.threads=1"])
    assert status == 0
    metrics = json.loads((tmp_path / "runs/tab_shrutime/mlp/seed0/metrics.json").read_text())
    assert metrics["best"]["test_auc"] > 0.85


@pytest.mark.parametrize("override, message", [
    ("data.target=Nope", "target column 'Nope' is not in the table"),
    ("data.path=/does/not/exist.csv", "does not exist"),
    ("data.scaling=robust", "data.scaling='robust'; choose one of quantile, standard"),
    ("model.cont_norm=batch", "cont_norm='batch'; choose 'layer' or 'none'"),
])
def test_bad_settings_exit_2_with_one_line(tmp_path, capsys, override, message):
    status = main(["task=tab_qsar_bio", "mixer=mlp", f"results_dir={tmp_path}", override,
                   "tracking.enabled=false"])
    assert status == 2
    assert message in capsys.readouterr().err


def test_quick_profile_is_three_shipped_tables():
    from katbench.data.tabular import SHIPPED
    from katbench.run import tasks_dir

    quick = []
    for path in sorted(tasks_dir().glob("tab_*.yaml")):
        doc = yaml.safe_load(path.read_text())
        if doc["pipeline"].get("on_request"):     # tab_csv: your own table
            continue
        if "quick" in doc["profiles"]:
            quick.append(doc["task"]["dataset"])
            assert doc["profiles"]["quick"]["pipeline"]["group"] == "tabular_quick"
        assert doc["pipeline"]["group"] is None                     # paper: one job per run
        assert doc["profiles"]["paper"]["pipeline"]["seeds"] == [0, 1, 2, 3, 4]   # 5 folds
    assert sorted(quick) == ["1995_income", "qsar_bio", "shrutime"]
    assert set(quick) <= set(SHIPPED)


def _shop_table(path, n=600):
    """A table with a category, two numbers and three targets that depend on them."""
    rng = np.random.default_rng(0)
    colour = rng.choice(["red", "green", "blue"], n)
    a, b = rng.normal(size=n), rng.normal(size=n)
    pd.DataFrame({"colour": colour, "a": a, "b": b,
                  "price": 3 * a - 2 * (colour == "red") + 0.5 * b ** 2
                  + rng.normal(scale=0.3, size=n),
                  "species": np.select([a > 0.5, a < -0.5], ["setosa", "virginica"],
                                       "versicolor")}).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("target, drop, metric, check", [
    ("species", "price", "accuracy", lambda v, base: v > base + 0.2),
    ("price", "species", "rmse", lambda v, base: v < 0.6 * base),
])
def test_tab_csv_infers_multiclass_and_regression(tmp_path, capsys, target, drop, metric, check):
    path = _shop_table(tmp_path / "shop.csv")
    status = main(["task=tab_csv", "mixer=grkan", "profile=quick", f"data.path={path}",
                   f"data.target={target}", f"data.drop=[{drop}]", f"results_dir={tmp_path}",
                   "tracking.enabled=false", "trainer.progress=none"])
    assert status == 0
    out = capsys.readouterr().out
    run = tmp_path / "runs/tab_csv/grkan/seed0"
    metrics = json.loads((run / "metrics.json").read_text())
    pred = np.load(run / "test_predictions.npz")
    frame = pd.read_csv(path)
    if metric == "accuracy":      # multiclass: one logit per class, accuracy and log loss
        assert "multiclass target, 3 classes" in out
        assert pred["pred"].shape == (120, 3) and 0 < float(pred["log_loss"]) < np.log(3)
        base = frame[target].value_counts(normalize=True).max()   # the majority class
    else:                         # regression: RMSE and MAE in the target's units
        assert "regression target" in out and pred["pred"].shape == (120,)
        assert float(pred["mae"]) < float(pred["rmse"])
        base = frame[target].std()                                 # predicting the mean
    assert metrics["metric"] == metric
    assert metrics["higher_is_better"] == (metric == "accuracy")
    assert check(metrics["best"][f"test_{metric}"], base), (metrics["best"], base)


def test_head_mixer_groups_divide_the_head_width():
    from katbench.tasks.tabular import _head_kwargs

    assert _head_kwargs("grkan", {"num_groups": 8, "act_init": "gelu"}, 20) == \
        {"num_groups": 4, "act_init": "gelu"}
    assert _head_kwargs("grkan", {"num_groups": "per_channel"}, 21) == \
        {"num_groups": "per_channel"}                   # one rational per channel fits any width
    assert _head_kwargs("kan", {"grid_size": 3}, 21) == {"grid_size": 3}
