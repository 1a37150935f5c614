"""Two runs aggregate into summary.csv / summary.md / plots; missing runs are named."""

from __future__ import annotations

import pandas as pd

from katbench.report import build_report
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
    assert "## fit_x_div_y" in md and f"| {winner} | **" in md
    assert "## Missing runs" in md and "- fit_x_div_y/kan/seed0" in md
    plots = {p.name for p in (tmp_path / "plots").iterdir()}
    assert {"function_fitting_bars.png", "function_fitting_error_surfaces.png",
            "grkan_rationals.png"} <= plots
