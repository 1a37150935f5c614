"""Snakemake profiles: the local default and the SLURM one parse and plan the pipeline (dry run)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def _dry_run(profile: str, tmp_path: Path, *config: str) -> str:
    # A command-line --config replaces the profile's `config:` list, so it is repeated here.
    proc = subprocess.run([*SNAKEMAKE, "-n", "--profile", f"profiles/{profile}",
                           "--config", f"results_dir={tmp_path}", *config], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout + proc.stderr


def test_local_profile_plans_the_quick_pipeline_and_keeps_going(tmp_path):
    settings = yaml.safe_load((ROOT / "profiles/local/config.yaml").read_text())
    assert settings["keep-going"] is True and settings["cores"] == "all"
    out = _dry_run("local", tmp_path)
    assert "rule run_group_function_fitting:" in out and "profile=quick" in out


def _slurm_profile(monkeypatch: pytest.MonkeyPatch, **env: str) -> dict:
    """profiles/slurm/config.yaml as Snakemake reads it (YTE) under the given SBATCH_* vars."""
    import yte

    for key in ("SBATCH_ACCOUNT", "SBATCH_PARTITION"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with open(ROOT / "profiles/slurm/config.yaml") as f:
        return yte.process_yaml(f, require_use_yte=True)


def test_slurm_profile_takes_account_and_partition_from_the_environment(monkeypatch):
    # The plugin passes `-p <default partition>` unless told one, which overrides sbatch's own
    # SBATCH_PARTITION; the profile hands both variables to it (tests/test_slurm.py runs it).
    assert {"slurm_account", "slurm_partition"}.isdisjoint(
        _slurm_profile(monkeypatch)["default-resources"])
    resources = _slurm_profile(monkeypatch, SBATCH_ACCOUNT="proj-1",
                               SBATCH_PARTITION="gpu")["default-resources"]
    assert resources["slurm_account"] == "'proj-1'" and resources["slurm_partition"] == "'gpu'"


def test_slurm_profile_routes_paper_jobs_with_resources(tmp_path, monkeypatch):
    settings = _slurm_profile(monkeypatch)
    assert settings["executor"] == "slurm" and settings["keep-going"] is True
    assert settings["config"] == ["profile=paper"]
    assert {"runtime", "mem_mb"} <= set(settings["default-resources"])
    tasks = {p.stem for p in (ROOT / "tasks").glob("*.yaml")}
    for rule, resources in settings["set-resources"].items():
        assert rule in ("tracking_store", "summary") or rule.startswith("run_group_") \
            or rule.removeprefix("run_") in tasks, f"{rule}: no such task"
        assert all(isinstance(v, int) and v > 0 for v in resources.values()), rule
    text = (ROOT / "profiles/slurm/config.yaml").read_text().lower()
    # No account, password or token is written here: such keys only read the environment.
    assert not re.search(r"^\s*[\w-]*(account|password|token|secret)\s*:\s*[^?\s]", text, re.M)
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        pytest.skip("snakemake-executor-plugin-slurm not installed: YAML checked, no dry run")
    out = _dry_run("slurm", tmp_path, "profile=paper")
    job = out[out.index("rule run_imagenet:"):].split("\n\n")[0]
    assert re.search(r"resources: .*mem_mb=128000.*runtime=2880.*gpu=1", job), job
    assert "katbench.run task=imagenet" in job and "profile=paper" in job
