"""`snakemake -n` on the quick profile lists every task x mixer x seed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).parents[1]


def _dry_run(tmp_path, *config):
    snakemake = Path(sys.executable).with_name("snakemake")
    proc = subprocess.run([str(snakemake), "-n", "--config", f"results_dir={tmp_path}", *config],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout + proc.stderr


def test_quick_dry_run_lists_all_tasks_mixers_seeds(tmp_path):
    out = _dry_run(tmp_path)
    quick = [p.stem for p in sorted((ROOT / "tasks").glob("*.yaml"))
             if "quick" in (yaml.safe_load(p.read_text()).get("profiles") or {})]
    assert {"fit_xy", "fit_x_div_y", "pinn_oscillator"} <= set(quick)
    for task in quick:
        for mixer in ("mlp", "kan", "grkan"):
            assert f"{tmp_path}/runs/{task}/{mixer}/seed0/metrics.json" in out, (task, mixer)
    assert "run_group_function_fitting" in out and "summary" in out


def test_paper_profile_has_three_seeds(tmp_path):
    out = _dry_run(tmp_path, "profile=paper", "families=pinn")
    for seed in (0, 1, 2):
        assert f"{tmp_path}/runs/pinn_oscillator/grkan/seed{seed}/metrics.json" in out
