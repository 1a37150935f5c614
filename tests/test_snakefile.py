"""The pipeline: `snakemake -n` lists every task x mixer x seed of a profile (per-task seeds and
per-profile groups included), a failed job still leaves a summary naming the missing run, and a
study runs each variant in its own folder and writes its table."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
FAMILIES = {"function_fitting", "pinn", "tabular", "graph", "vision"}


def _snakemake(workdir, *args, check=True):
    proc = subprocess.run([str(SNAKEMAKE), "-s", str(ROOT / "Snakefile"), "-d", str(workdir),
                           *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert not check or proc.returncode == 0, proc.stderr[-2000:]
    return proc


def _dry_run(tmp_path, *config):
    proc = _snakemake(tmp_path, "-n", "--config", f"results_dir={tmp_path}", *config)
    return proc.stdout + proc.stderr


def _tasks(profile):
    """The tasks a plain pipeline run of ``profile`` runs (on-request tasks only when named)."""
    docs = {p.stem: yaml.safe_load(p.read_text()) for p in sorted((ROOT / "tasks").glob("*.yaml"))}
    return {t: d for t, d in docs.items() if profile in (d.get("profiles") or {})
            and not (d.get("pipeline") or {}).get("on_request")}


def test_quick_dry_run_lists_all_tasks_mixers_seeds(tmp_path):
    out = _dry_run(tmp_path)
    quick = _tasks("quick")
    assert {d["task"]["family"] for d in quick.values()} == FAMILIES
    assert {"fit_xy", "fit_x_div_y", "pinn_oscillator", "tab_qsar_bio", "zinc", "digits"} <= \
        set(quick)
    for task in quick:
        for mixer in ("mlp", "kan", "grkan"):
            assert f"{tmp_path}/runs/{task}/{mixer}/seed0/metrics.json" in out, (task, mixer)
    assert f"{tmp_path}/runs/fit_xy/mlp/seed1/metrics.json" not in out
    for job in ("run_group_function_fitting", "run_group_tabular_quick", "run_group_graph",
                "summary"):
        assert job in out


def test_paper_profile_seeds_and_groups(tmp_path):
    out = _dry_run(tmp_path, "profile=paper", "families=pinn,tabular")
    for seed in range(5):      # the PINN's paper seeds: 5
        assert f"{tmp_path}/runs/pinn_oscillator/grkan/seed{seed}/metrics.json" in out
    assert f"{tmp_path}/runs/pinn_oscillator/grkan/seed5/metrics.json" not in out
    for seed in range(5):      # Table 9 protocol: 5 folds
        assert f"{tmp_path}/runs/tab_albert/mlp/seed{seed}/metrics.json" in out
    assert "run_group_tabular_quick" not in out     # grouped in the quick profile only
    assert f"{tmp_path}/runs/tab_shrutime/kan/seed4/metrics.json" in out


def test_failed_job_still_yields_a_summary(tmp_path):
    results = tmp_path / "results"
    proc = _snakemake(tmp_path, "--cores", "2", "--config", "families=pinn", "mixers=mlp,bogus",
                      f"results_dir={results}", "overrides=trainer.epochs=2 "
                      "task.n_collocation=8 task.n_eval=20 tracking.enabled=false",
                      check=False)
    assert proc.returncode != 0                      # the failure is not hidden
    md = (results / "summary.md").read_text()
    assert "- pinn_oscillator/bogus: seed 0\n" in md
    row = next(line for line in md.splitlines() if line.startswith("| pinn | pinn_oscillator"))
    assert row.split("|")[5].strip() == "missing"    # the bogus column
    assert (results / "runs/pinn_oscillator/mlp/seed0/metrics.json").exists()
    csv = (results / "summary.csv").read_text()
    assert "pinn_oscillator,mlp,0,test_rel_l2" in csv and "bogus" not in csv


def test_tasks_config_selects_tasks_and_rejects_unknown_ones(tmp_path):
    out = _dry_run(tmp_path, "profile=paper", "tasks=digits,pinn_oscillator")
    assert "run_digits" in out and "run_pinn_oscillator" in out and "run_zinc" not in out
    assert "pinn_oscillator/kan/seed4" in out         # the paper profile's 5 PINN seeds
    proc = _snakemake(tmp_path, "-n", "--config", "tasks=digits,nope", check=False)
    assert proc.returncode != 0
    assert "unknown task(s) nope in --config tasks=" in proc.stdout + proc.stderr


def test_own_data_tasks_run_only_when_named(tmp_path):
    out = _dry_run(tmp_path)
    assert not any(f"runs/{t}/" in out for t in ("tab_csv", "mol_csv", "images"))
    out = _dry_run(tmp_path, "tasks=mol_csv", "seeds=0,1")
    for mixer in ("mlp", "kan", "grkan"):
        for seed in (0, 1):
            assert f"{tmp_path}/runs/mol_csv/{mixer}/seed{seed}/metrics.json" in out
    assert "runs/zinc/" not in out and "runs/tab_csv/" not in out


GROUP_LABELS = [f"grkan-num_groups={g}" for g in (1, 2, 4, 8, 16, 32)]


def test_study_dry_run_lists_each_variant_in_its_own_folder(tmp_path):
    proc = _snakemake(tmp_path, "-n", "-p", "--config", f"results_dir={tmp_path}",
                      "study=grkan_groups")
    out = proc.stdout + proc.stderr
    for task in ("digits", "pattern", "tab_1995_income", "tab_shrutime"):
        for label in GROUP_LABELS:
            assert f"{tmp_path}/runs/{task}/{label}/seed0/metrics.json" in out, (task, label)
    assert "runs/fit_xy/" not in out and "runs/zinc/" not in out and "tab_qsar_bio" not in out
    assert f"{tmp_path}/runs/digits/grkan/seed0" not in out        # only the variants run
    assert "mixer=grkan label=grkan-num_groups=16 mixer.num_groups=16 seed=0" in out
    assert f"-m katbench.report {tmp_path} --study grkan_groups " in out
    assert f"{tmp_path}/studies/grkan_groups.md" in out
    # 6 variants x (digits, pattern's graph group, the tabular group) + store, summary, all
    assert re.search(r"^total\s+21$", out, re.MULTILINE), out[-1500:]


def test_study_tasks_can_be_replaced_and_unknown_studies_are_one_line(tmp_path):
    out = _dry_run(tmp_path, "study=grkan_order", "tasks=zinc")
    assert f"{tmp_path}/runs/zinc/grkan-order=7x6/seed0/metrics.json" in out
    assert "runs/digits/" not in out
    proc = _snakemake(tmp_path, "-n", "--config", "study=bogus", check=False)
    assert proc.returncode != 0
    assert ("unknown study 'bogus'; known: grkan_components, grkan_denominator, grkan_groups, "
            "grkan_init, grkan_order, kan_family (studies/*.yaml)") in proc.stdout + proc.stderr


def test_a_study_runs_its_variants_and_writes_its_table(tmp_path):
    results = tmp_path / "results"
    _snakemake(tmp_path, "--cores", "2", "--config", "study=grkan_order", "tasks=fit_xy",
               f"results_dir={results}", "overrides=trainer.epochs=2 tracking.enabled=false")
    for label in ("grkan-order=3x2", "grkan-order=5x4", "grkan-order=7x6"):
        run = results / "runs" / "fit_xy" / label / "seed0"
        assert json.loads((run / "metrics.json").read_text())["mixer"] == label
        config = yaml.safe_load((run / "config.yaml").read_text())
        assert config["label"] == label and config["mixer"]["name"] == "grkan"
    assert yaml.safe_load((results / "runs/fit_xy/grkan-order=7x6/seed0/config.yaml")
                          .read_text())["mixer"]["order"] == [7, 6]
    md = (results / "studies" / "grkan_order.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| function_fitting |"))
    assert row.count("(n=1)") == 3 and "missing" not in row
    assert "- [grkan_order](studies/grkan_order.md)" in (results / "summary.md").read_text()
