"""Study tables: one row per task and one column per variant (mean ± std (n), missing runs
named), the paper's ImageNet figure first with the line saying the task differs, mean ranks per
family; summary.md links the table; an unknown study is one line and exit 2."""

from __future__ import annotations

import json

from katbench.report import build_report
from katbench.report.cli import main as report_main

ORDERS = ["grkan-order=3x2", "grkan-order=5x4", "grkan-order=7x6"]


def _fake_run(root, task, label, seed, metric, value, family, hib):
    """A finished run folder as the trainer writes it (metrics.json, config.yaml)."""
    out = root / "runs" / task / label / f"seed{seed}"
    out.mkdir(parents=True)
    (out / "config.yaml").write_text(f"profile: quick\nlabel: {label}\n")
    scores = {f"test_{metric}": value, f"val_{metric}": value}
    (out / "metrics.json").write_text(json.dumps({
        "task": task, "mixer": label, "seed": seed, "family": family, "metric": metric,
        "higher_is_better": hib, "selected_on": f"val_{metric}", "best": scores,
        "final": scores, "params": 10, "train_time_s": 2.0 + seed, "peak_memory_mb": 1.0,
        "hardware": "CPU test"}))


def _row(md, start):
    return next(line for line in md.splitlines() if line.startswith(start))


def test_study_table_sets_variants_beside_the_paper_and_ranks_them(tmp_path):
    digits = {"grkan-order=3x2": [0.89, 0.91], "grkan-order=5x4": [0.95, 0.97],
              "grkan-order=7x6": [0.93]}
    for label, values in digits.items():
        for seed, value in enumerate(values):
            _fake_run(tmp_path, "digits", label, seed, "accuracy", value, "vision", True)
    for label, value in zip(ORDERS[:2], [0.02, 0.01], strict=True):
        _fake_run(tmp_path, "fit_xy", label, 0, "mse", value, "function_fitting", False)
    _fake_run(tmp_path, "fit_xy", "mlp", 0, "mse", 0.5, "function_fitting", False)  # no variant
    expected = [f"{task}/{label}/seed{seed}" for task in ("digits", "fit_xy")
                for label in ORDERS for seed in (0, 1)]
    build_report(tmp_path, expected, studies=["grkan_order"])
    md = (tmp_path / "studies" / "grkan_order.md").read_text()
    assert md.startswith("# Study `grkan_order`\n\nRational order (m, n) of GR-KAN")
    assert "Profile **quick** · hardware: CPU test · 7 of 12 runs finished · 2 tasks" in md
    assert "**Paper**: KAT Table 17, ImageNet-1k top-1 (%), KAT-T (first row). The task differs" \
        in md
    assert "| family | task | metric | grkan-order=3x2 | grkan-order=5x4 | grkan-order=7x6 |" in md
    assert _row(md, "| paper |") == ("| paper | ImageNet-1k (KAT Table 17) | top-1 % ↑ | 74.2 | "
                                     "74.6 | 74.6 |")
    assert _row(md, "| vision | digits |") == (
        "| vision | digits | test_accuracy ↑ | 0.9 ± 0.014 (n=2) | **0.96 ± 0.014** (n=2) | "
        "0.93 (n=1 of 2) |")
    assert _row(md, "| function_fitting | fit_xy |") == (
        "| function_fitting | fit_xy | test_mse ↓ | 0.02 (n=1 of 2) | **0.01** (n=1 of 2) | "
        "missing |")
    assert "mlp" not in md
    # digits is the one task every variant finished: ranks 3, 1, 2
    ranks = md.split("## Mean rank per family")[1]
    assert _row(ranks, "| vision |") == "| vision | 1 | 3.00 | **1.00** | 2.00 |"
    assert _row(ranks, "| all |") == "| all | 1 | 3.00 | **1.00** | 2.00 |"
    assert "| function_fitting |" not in ranks
    assert _row(ranks, "| train time (s/run) |") == "| train time (s/run) | | 2.3 | 2.3 | 2.0 |"
    assert (f"snakemake --cores all --config study=grkan_order profile=quick "
            f"results_dir={tmp_path}") in md
    summary = (tmp_path / "summary.md").read_text()
    assert "- [grkan_order](studies/grkan_order.md)" in summary
    assert f"python -m katbench.report {tmp_path} --study grkan_order" in summary


def test_study_without_a_paper_table_has_no_paper_row(tmp_path):
    for label, value in (("grkan-variant=sum_abs", 0.9), ("grkan-variant=abs_sum", 0.8)):
        _fake_run(tmp_path, "digits", label, 0, "accuracy", value, "vision", True)
    assert report_main([str(tmp_path), "--study", "grkan_denominator"]) == 0
    md = (tmp_path / "studies" / "grkan_denominator.md").read_text()
    assert "| paper |" not in md and "**Paper**" not in md
    assert _row(md, "| vision | digits |") == ("| vision | digits | test_accuracy ↑ | "
                                               "**0.9** (n=1) | 0.8 (n=1) |")


def test_unknown_study_is_one_line_and_exit_2(tmp_path, capsys):
    assert report_main([str(tmp_path), "--study", "bogus"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("python -m katbench.report: unknown study 'bogus'; known: "
                          "grkan_components, grkan_denominator, grkan_groups")
    assert "\n" not in err and not (tmp_path / "summary.md").exists()
