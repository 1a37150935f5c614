"""Report: runs aggregate into summary.csv / summary.md / plots; missing runs are named, never
zeros; KAT Table 9 averages present rows only; stand-in metrics get no paper number."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from katbench.report import build_report, paper_values
from katbench.run import main


def test_two_runs_aggregate_into_a_summary(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main(["task=fit_x_div_y", "mixer=mlp,grkan", "trainer.epochs=3", "task.n_train=64",
                 "task.n_val=64", "task.n_test=64", "task.grid_size=8", "trainer.progress=none",
                 "tracking.enabled=false", f"results_dir={tmp_path}"]) == 0
    table = build_report(tmp_path, ["fit_x_div_y/mlp/seed0", "fit_x_div_y/grkan/seed0",
                                    "fit_x_div_y/kan/seed0"])
    csv = pd.read_csv(tmp_path / "summary.csv")
    assert list(csv.columns) == ["task", "mixer", "seed", "metric", "value", "higher_is_better",
                                 "paper_value"]
    assert len(csv) == len(table) == 2 * 5
    main_rows = csv[csv.metric == "test_mse"].set_index("mixer")
    assert main_rows.loc["mlp", "paper_value"] == 0.0766           # KAT Table 11
    assert main_rows.loc["grkan", "paper_value"] == 0.0016
    assert not main_rows.higher_is_better.any()
    assert csv[csv.metric == "params"].paper_value.isna().all()
    md = (tmp_path / "summary.md").read_text()
    winner = main_rows.value.idxmin()
    overview = next(line for line in md.splitlines() if line.startswith("| function_fitting |"))
    assert f"**{main_rows.loc[winner, 'value']:.4g}**" in overview
    assert "| missing |" in overview and "0.0766 / 1.852 / 0.0016" in overview
    assert "### fit_x_div_y" in md
    assert "## Missing runs" in md and "- fit_x_div_y/kan/seed0" in md
    plots = {p.name for p in (tmp_path / "plots").iterdir()}
    assert {"function_fitting_bars.png", "function_fitting_error_surfaces.png",
            "grkan_rationals_function_fitting.png"} <= plots
    assert "![function_fitting_bars](plots/function_fitting_bars.png)" in md


def _fake_run(root, task, mixer, seed, metric, value, family, hib=True, extra=None):
    """A finished run folder as the trainer writes it (metrics.json, config.yaml)."""
    out = root / "runs" / task / mixer / f"seed{seed}"
    out.mkdir(parents=True)
    (out / "config.yaml").write_text("profile: quick\n")
    scores = {f"test_{metric}": value, f"val_{metric}": value}
    (out / "metrics.json").write_text(json.dumps({
        "task": task, "mixer": mixer, "seed": seed, "family": family, "metric": metric,
        "higher_is_better": hib, "selected_on": f"val_{metric}", "best": scores,
        "final": scores, "params": 10, "train_time_s": 1.0, "peak_memory_mb": 1.0}))
    if extra:
        np.savez(out / "test_predictions.npz", **extra)


def test_table9_average_uses_present_rows_only(tmp_path):
    for mixer, auc in (("mlp", 0.80), ("kan", 0.70), ("grkan", 0.90)):
        _fake_run(tmp_path, "tab_qsar_bio", mixer, 0, "auc", auc, "tabular",
                  extra={"accuracy": np.array(auc - 0.05), "log_loss": np.array(0.4)})
    for mixer, auc in (("mlp", 0.50), ("grkan", 0.60)):     # kan failed on this table
        _fake_run(tmp_path, "tab_shrutime", mixer, 0, "auc", auc, "tabular")
    expected = [f"{t}/{m}/seed0" for t in ("tab_qsar_bio", "tab_shrutime")
                for m in ("mlp", "kan", "grkan")]
    table = build_report(tmp_path, expected)
    md = (tmp_path / "summary.md").read_text()
    paper = paper_values()
    row = next(line for line in md.splitlines() if "average of the" in line)
    cells = [c.strip() for c in row.strip("|").split("|")]
    # Only tab_qsar_bio has every mixer: its values alone, and the paper's for it alone.
    assert cells[0] == "**average of the 1 tables run**"
    assert cells[2:5] == ["80.0", "70.0", "**90.0**"]
    assert cells[5:] == [f"{100 * paper['tab_qsar_bio']['values'][m]:.1f}" for m in
                         ("mlp", "grkan")]
    assert "Average over: tab_qsar_bio;" in md
    shrutime = next(line for line in md.splitlines() if line.startswith("| tab_shrutime | shipped"))
    assert "| 50.0 | missing | 60.0 |" in shrutime
    assert "| tab_albert | needs download (OpenML 41147) | – | – | – |" in md
    assert "| tab_spambase | shipped, not in this profile | – | – | – |" in md
    assert "| average of all 15 (paper) |" in md and "| 82.8 | 83.7 |" in md
    assert "- tab_shrutime/kan/seed0" in md
    acc = table[(table.metric == "test_accuracy") & (table.task == "tab_qsar_bio")]
    assert acc.set_index("mixer").value.to_dict() == pytest.approx(
        {"mlp": 0.75, "kan": 0.65, "grkan": 0.85})
    assert "test_accuracy | test_log_loss" in md
    assert not (table.value == 0).any()


def test_stand_in_metric_gets_no_paper_number(tmp_path):
    for mixer, mae in (("mlp", 0.6), ("grkan", 0.5)):
        _fake_run(tmp_path, "zinc", mixer, 0, "mae_micro_zinc", mae, "graph", hib=False)
    table = build_report(tmp_path, ["zinc/mlp/seed0", "zinc/grkan/seed0"])
    assert table[table.metric == "test_mae_micro_zinc"].paper_value.isna().all()
    md = (tmp_path / "summary.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| graph | zinc |"))
    assert "n/a (paper: test_mae, KAT Table 10)" in row
    assert "0.226" not in md and "0.211" not in md
