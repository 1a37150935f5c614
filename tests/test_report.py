"""Report: runs aggregate into summary.csv / runs.csv / summary.md / plots; missing runs are
named, never zeros; KAT Table 9 averages present rows only; stand-in metrics get no paper number;
mixers are compared with mlp paired over seeds and with the paper; publishing copies only
metrics.json and config.yaml and rebuilds the same report there."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from katbench.report import build_report, paper_values, publish
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
    assert "## Missing runs" in md and "- fit_x_div_y/kan: seed 0\n" in md
    plots = {p.name for p in (tmp_path / "plots").iterdir()}
    assert {"function_fitting_bars.png", "function_fitting_error_surfaces.png",
            "grkan_rationals_function_fitting.png"} <= plots
    assert "![function_fitting_bars](plots/function_fitting_bars.png)" in md
    runs = pd.read_csv(tmp_path / "runs.csv").set_index("mixer")
    assert list(runs.index) == ["grkan", "mlp"]
    assert (runs.metric == "test_mse").all() and (runs.epochs == 3).all()
    assert (runs.max_epochs == 3).all() and (runs.device == "cpu").all()
    assert runs.hardware.str.startswith("CPU ").all()
    assert runs.value.to_dict() == pytest.approx(main_rows.value.to_dict())
    # Table 11 magnitudes are not comparable: the ranking of the mixers is compared instead.
    ranking = _row(md.split("## Differences from the paper")[1], "| fit_x_div_y | ")
    assert "| grkan, mlp |" in ranking or "| mlp, grkan |" in ranking


def _fake_run(root, task, mixer, seed, metric, value, family, hib=True, extra=None,
              config="profile: quick\n", **fields):
    """A finished run folder as the trainer writes it (metrics.json, config.yaml); ``fields``
    add to or replace metrics.json keys."""
    out = root / "runs" / task / mixer / f"seed{seed}"
    out.mkdir(parents=True)
    (out / "config.yaml").write_text(config)
    scores = {f"test_{metric}": value, f"val_{metric}": value}
    (out / "metrics.json").write_text(json.dumps({
        "task": task, "mixer": mixer, "seed": seed, "family": family, "metric": metric,
        "higher_is_better": hib, "selected_on": f"val_{metric}", "best": scores,
        "final": scores, "params": 10, "train_time_s": 1.0, "peak_memory_mb": 1.0, **fields}))
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
    assert "- tab_shrutime/kan: seed 0\n" in md
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


def _toy_runs(root, task, mlp, other, mixer="grkan", hib=True, family="toy"):
    for seed, (a, b) in enumerate(zip(mlp, other, strict=True)):
        _fake_run(root, task, "mlp", seed, "acc", a, family, hib=hib)
        _fake_run(root, task, mixer, seed, "acc", b, family, hib=hib)


def _row(md, start):
    return next(line for line in md.splitlines() if line.startswith(start))


def test_runs_csv_has_one_row_per_run_with_cost_and_provenance(tmp_path):
    _fake_run(tmp_path, "toy_a", "mlp", 0, "acc", 0.7, "toy", epochs_done=8, stopped_early=True,
              train_time_s=1700.0, wall_time_s=1800.0, hardware="NVIDIA H200", device="cuda",
              git_commit="abc123", params=1234, config="profile: paper\ntrainer:\n  epochs: 10\n")
    _fake_run(tmp_path, "toy_a", "grkan", 0, "acc", 0.8, "toy", wall_time_s=1800.0,
              device="cuda:0", hardware="NVIDIA H200", config="profile: paper\n")
    _fake_run(tmp_path, "toy_b", "mlp", 0, "acc", 0.6, "other", best=None,   # an older run
              selected_on="final", config="trainer:\n  epochs: 5\n")
    build_report(tmp_path)
    runs = pd.read_csv(tmp_path / "runs.csv", keep_default_na=False)
    assert list(runs.columns) == [
        "task", "family", "mixer", "seed", "metric", "value", "epochs", "max_epochs",
        "stopped_early", "train_time_s", "wall_time_s", "hardware", "device", "commit", "params",
        "profile"]
    assert runs[["task", "mixer"]].values.tolist() == [["toy_a", "grkan"], ["toy_a", "mlp"],
                                                      ["toy_b", "mlp"]]
    first = runs.iloc[1].to_dict()
    assert first == {"task": "toy_a", "family": "toy", "mixer": "mlp", "seed": 0,
                     "metric": "test_acc", "value": 0.7, "epochs": "8", "max_epochs": "10",
                     "stopped_early": "True", "train_time_s": 1700.0, "wall_time_s": "1800.0",
                     "hardware": "NVIDIA H200", "device": "cuda", "commit": "abc123",
                     "params": 1234, "profile": "paper"}
    old = runs.iloc[2]
    assert (old.hardware, old.device, old.commit, old.profile) == ("unknown",) * 4
    assert (old.epochs, old.wall_time_s, old.max_epochs) == ("", "", "5")
    md = (tmp_path / "summary.md").read_text()
    assert "Profile **paper**" in md and "Paper profile:" in md and "quick profile" not in md
    # Two runs of 1800 s on CUDA: 1 GPU-process-hour; the CPU run has no wall time recorded.
    assert "| toy | 2 | 0.47 | 1.00 | 1.00 | NVIDIA H200 |" in md
    assert "| other | 1 | 0.00 | 0.00 (1 runs unknown) | 0.00 | unknown |" in md
    assert "| **all** | 3 |" in md and "NVIDIA H200, unknown |" in md
    assert "```bash\nsnakemake --cores all --config profile=paper tasks=toy_b --resources " \
           "gpu=<GPUs>\nsnakemake --cores all --config profile=paper tasks=toy_a --resources " \
           f"gpu=<GPUs>\npython -m katbench.report {tmp_path}\n```" in md


def test_paired_difference_matches_a_hand_computation():
    from katbench.report import paired_difference

    base = pd.Series([10.0, 10.0, 10.0], index=[0, 1, 2])
    ours = pd.Series([13.0, 11.0, 12.0, 99.0], index=[2, 0, 1, 3])    # seed 3: no mlp pair
    p = paired_difference(ours, base, higher_is_better=True)
    half = 4.302652729911275 * 1.0 / np.sqrt(3)                       # t(0.975, 2) sd/sqrt(n)
    assert (p.n, p.mean) == (3, pytest.approx(2.0))
    assert (p.low, p.high) == (pytest.approx(2 - half), pytest.approx(2 + half))
    assert half == pytest.approx(2.484, abs=1e-3)
    assert p.verdict == "no significant difference" and p.text() == "+2 [-0.484, +4.48]"
    lower = paired_difference(ours, base, higher_is_better=False)     # an error metric
    assert (lower.mean, lower.low, lower.high) == pytest.approx((-2.0, -2 - half, -2 + half))
    better = paired_difference(pd.Series([1.0, 1.1, 0.9]), pd.Series([0.0, 0.0, 0.0]), True)
    assert better.verdict == "better"
    assert paired_difference(pd.Series([1.0, 1.1, 0.9]), pd.Series([0.0, 0.0, 0.0]),
                             False).verdict == "worse"
    one = paired_difference(pd.Series([1.0]), pd.Series([0.5]), True)
    assert (one.n, one.mean, one.low, one.verdict, one.text()) == (1, 0.5, None, "n=1", "+0.5")
    assert paired_difference(pd.Series([1.0], [1]), pd.Series([0.5], [0]), True).n == 0


def test_against_mlp_section_pairs_seeds_and_sums_up_per_family(tmp_path):
    _toy_runs(tmp_path, "toy_better", [0.50, 0.60, 0.70], [0.60, 0.71, 0.79])
    _toy_runs(tmp_path, "toy_worse", [0.50, 0.60, 0.70], [0.40, 0.49, 0.61])
    _toy_runs(tmp_path, "toy_mixed", [0.50, 0.50, 0.50], [0.51, 0.52, 0.53 - 0.03])
    _toy_runs(tmp_path, "toy_err", [0.30, 0.40, 0.50], [0.20, 0.30, 0.40], hib=False)
    _fake_run(tmp_path, "toy_err", "kan", 0, "acc", 0.35, "toy", hib=False)
    build_report(tmp_path)
    md = (tmp_path / "summary.md").read_text()
    section = md.split("## Against MLP (paired over seeds)")[1].split("\n## ")[0]
    assert "| task | mixer | Δ vs mlp (95% CI) | n pairs | verdict |" in section
    assert _row(section, "| toy_better | grkan |").endswith("| 3 | better |")
    assert _row(section, "| toy_worse | grkan |").endswith("| 3 | worse |")
    assert _row(section, "| toy_mixed | grkan |").endswith("| 3 | no significant difference |")
    # Lower is better: an error 0.1 lower than mlp's on every seed is +0.1, better.
    assert _row(section, "| toy_err | grkan |").startswith("| toy_err | grkan | +0.1 [+0.1, +0.1]")
    assert _row(section, "| toy_err | grkan |").endswith("| better |")
    assert _row(section, "| toy_err | kan |") == "| toy_err | kan | -0.05 | 1 | n=1 |"
    assert ("- GR-KAN beats MLP on 3 of 4 tasks (significantly on 2; significantly worse on 1)"
            in section)
    assert "- KAN beats MLP on 0 of 1 tasks (significantly on 0; significantly worse on 0)" \
        in section
    overview = _row(md, "| toy | toy_better |")
    assert "0.6 ± 0.1 (n=3)" in overview and "**0.7 ± 0.095** (n=3)" in overview


def test_paper_differences_flag_values_beyond_the_allowed_spread(tmp_path, monkeypatch):
    import katbench.report as report

    paper = {
        "toy_a": {"metric": "test_acc", "source": "Toy Table", "tolerance": 0.015,
                  "values": {"mlp": 0.60, "grkan": 0.70},
                  "difference": "our toy data is smaller"},
        "toy_b": {"metric": "test_acc", "source": "Toy Table",
                  "values": {"mlp": 0.60, "grkan": 0.70}, "spread": {"mlp": 0.05}},
        "toy_c": {"metric": "test_acc", "source": "Toy Table", "compare": "ranking",
                  "values": {"mlp": 10.0, "kan": 30.0, "grkan": 20.0}},
        "toy_d": {"metric": "test_auc", "source": "Toy Table", "tolerance": 0.0,
                  "values": {"mlp": 0.1}},
        "toy_e": {"metric": "test_acc", "source": "Toy text", "compare": "ranking",
                  "ranking": ["grkan", "mlp"], "difference": "the paper trains shorter"}}
    monkeypatch.setattr(report, "paper_values", lambda: paper)
    _toy_runs(tmp_path, "toy_a", [0.61, 0.61], [0.60, 0.62])     # mlp within, grkan 0.09 off
    _toy_runs(tmp_path, "toy_b", [0.50], [0.75])                 # mlp 0.1 off; grkan no spread
    for mixer, value in (("mlp", 0.9), ("kan", 0.5), ("grkan", 0.7)):
        _fake_run(tmp_path, "toy_c", mixer, 0, "acc", value, "toy")
    _fake_run(tmp_path, "toy_d", "mlp", 0, "acc", 0.9, "toy")     # another metric: not compared
    _toy_runs(tmp_path, "toy_e", [0.8], [0.7])                   # an order without numbers
    build_report(tmp_path)
    md = (tmp_path / "summary.md").read_text()
    section = md.split("## Differences from the paper")[1].split("\n## ")[0]
    assert "2 of 3 values differ by more than allowed." in section
    assert "| toy_a | grkan | 0.61 | 0.7 | ± 0.015 | note 1 |" in section
    assert "| toy_b | mlp | 0.5 | 0.6 | ± 0.05 | note 2 |" in section
    assert "| toy_a | mlp |" not in section and "toy_d" not in section
    assert "Not checked (no spread or tolerance for them): toy_b/grkan." in section
    assert "| toy_c | mlp, grkan, kan | kan, grkan, mlp | no | note 2 |" in section
    assert "| toy_e | mlp, grkan | grkan, mlp | no | note 3 |" in section
    # each explanation once, numbered in order of first use
    assert "1. our toy data is smaller\n2. not yet explained\n3. the paper trains shorter\n" \
        in section
    assert section.count("not yet explained") == 1
    assert _row(md, "| toy | toy_e |").endswith("| best first: grkan, mlp |")
    assert "Quick-profile runs" in section


def md_text(folder: Path) -> str:
    return (folder / "summary.md").read_text()


def test_publish_copies_two_files_and_rebuilds_the_report_there(tmp_path):
    from katbench.report.cli import main as report_main

    src, dest = tmp_path / "results", tmp_path / "published"
    for seed in (0, 1):
        _fake_run(src, "zinc", "mlp", seed, "mae", 0.3 + seed / 100, "graph", hib=False,
                  extra={"accuracy": np.array(0.5)})
        _fake_run(src, "zinc", "grkan", seed, "mae", 0.2 + seed / 100, "graph", hib=False)
        (src / "runs" / "zinc" / "mlp" / f"seed{seed}" / "checkpoint.pt").write_bytes(b"x")
    keep = dest / "runs" / "zinc" / "mlp" / "seed0" / "notes.txt"
    keep.parent.mkdir(parents=True)
    keep.write_text("kept")
    (keep.parent / "metrics.json").write_text("{}")                 # stale: overwritten
    ids = [f"zinc/{m}/seed{s}" for m in ("mlp", "kan", "grkan") for s in (0, 1)]
    assert report_main([str(src), "--publish", str(dest), *ids]) == 0
    files = sorted(str(p.relative_to(dest / "runs")) for p in (dest / "runs").rglob("*")
                   if p.is_file())
    assert files == sorted([f"zinc/{m}/seed{s}/{name}" for m in ("mlp", "grkan") for s in (0, 1)
                            for name in ("config.yaml", "metrics.json")]
                           + ["zinc/mlp/seed0/notes.txt"])
    src_run = src / "runs" / "zinc" / "mlp" / "seed0"
    assert (keep.parent / "metrics.json").read_bytes() == (src_run / "metrics.json").read_bytes()
    md = (dest / "summary.md").read_text()
    assert "- zinc/kan: seeds 0, 1\n" in md
    assert "| graph | zinc | test_mae ↓ | 0.305 ± 0.0071 (n=2) | missing |" in md
    assert "| zinc | grkan | +0.1 [+0.1, +0.1] | 2 | better |" in md
    assert {"summary.csv", "runs.csv", "summary.md"} <= {p.name for p in dest.iterdir()}
    assert (dest / "plots" / "graph_bars.png").exists()
    assert "test_accuracy" not in (dest / "summary.csv").read_text()   # needs the npz: skipped
    assert f"python -m katbench.report {src} --publish {dest}\n" in md_text(dest)
    published = {n: (dest / n).read_text() for n in ("summary.md", "summary.csv", "runs.csv")}
    assert report_main([str(dest), *ids]) == 0                      # the old positional CLI
    assert {n: (dest / n).read_text() for n in published} == published
    assert report_main([str(dest), "--publish", str(tmp_path / "again"), "zinc/mlp/0"]) == 2


def test_commands_file_replaces_the_default_commands(tmp_path):
    _fake_run(tmp_path, "toy_a", "mlp", 0, "acc", 0.7, "toy")
    (tmp_path / "commands.sh").write_text("# how these runs were made\n"
                                          "python -m katbench.run task=toy_a \\\n"
                                          "    mixer=mlp\n\npython -m katbench.report x\n")
    build_report(tmp_path)
    assert "```bash\npython -m katbench.run task=toy_a \\\n    mixer=mlp\n" \
           "python -m katbench.report x\n```" in md_text(tmp_path)


def test_thinned_history_keeps_evaluated_epochs_evenly_with_both_ends():
    from katbench.report import thinned_history

    history = [{"epoch": e, "train_loss": 1.0 / e, **({"test_mse": e} if e % 10 == 0 else {})}
               for e in range(1, 2001)]
    kept = thinned_history(history, limit=50)
    assert len(kept) == 50 and all("test_mse" in row for row in kept)
    assert kept[0]["epoch"] == 10 and kept[-1]["epoch"] == 2000
    assert thinned_history(history[:5]) == history[:5]        # nothing evaluated: all kept


def test_publish_carries_histories_and_draws_learning_curves(tmp_path):
    from katbench import tracking

    src, dest = tmp_path / "results", tmp_path / "published"
    for mixer in ("mlp", "grkan"):
        for seed in (0, 1):
            _fake_run(src, "fit_xy", mixer, seed, "mse", 0.1, "function_fitting", hib=False)
            run = src / "runs" / "fit_xy" / mixer / f"seed{seed}"
            for epoch in range(1, 501):
                tracking.append_history(run, epoch, {"train_loss": 1.0 / epoch,
                                                     "test_mse": 1.0 / epoch ** (seed + 1)})
    publish(src, dest)
    copied = tracking.read_history(dest / "runs" / "fit_xy" / "grkan" / "seed1")
    assert len(copied) == 200 and copied[-1] == {"epoch": 500, "train_loss": 1 / 500,
                                                 "test_mse": 1 / 500 ** 2}
    assert (dest / "plots" / "function_fitting_curves.png").stat().st_size > 10_000
    assert "![function_fitting_curves](plots/function_fitting_curves.png)" in md_text(dest)


def test_paper_protocol_of_the_last_epoch_selects_the_last_epoch(tmp_path, monkeypatch):
    import katbench.report as report

    paper = {"toy_last": {"metric": "test_acc", "source": "Toy Table", "epoch": "last",
                          "values": {"mlp": 0.5}}}
    monkeypatch.setattr(report, "paper_values", lambda: paper)
    for task in ("toy_last", "toy_best"):    # best on validation 0.9, last epoch 0.7
        _fake_run(tmp_path, task, "mlp", 0, "acc", 0.9, "toy",
                  final={"test_acc": 0.7, "val_acc": 0.8})
    build_report(tmp_path)
    runs = pd.read_csv(tmp_path / "runs.csv").set_index("task")
    assert runs.loc["toy_last", "value"] == 0.7 and runs.loc["toy_best", "value"] == 0.9
    md = (tmp_path / "summary.md").read_text()
    assert "; the last for toy_last, whose benchmark reports the last epoch)" in md
    # beside the reported last epoch, the test metric at the best validation epoch
    table = pd.read_csv(tmp_path / "summary.csv").set_index(["task", "metric"])
    assert table.loc[("toy_last", "at_best_val_test_acc"), "value"] == 0.9
    assert ("toy_best", "at_best_val_test_acc") not in table.index   # it is the selected one
    assert "| mlp | 0.7 | 0.7 | 0.9 | 10 |" in _section(md, "### toy_last")
    assert "at best val" not in _section(md, "### toy_best")


def _section(md: str, heading: str) -> str:
    """The text of ``md`` from ``heading`` to the next heading."""
    return md.split(heading, 1)[1].split("\n#", 1)[0]
