"""A real one-node SLURM cluster (scripts/slurm_local.sh): profiles/slurm sends every job through
sbatch, retries, keeps going and resumes a cancelled job from its checkpoint; `srun torchrun`
runs one rank per task like one process.

Skipped without SLURM, munge, root or the executor plugin, unless KATBENCH_CLUSTER_TESTS=require
(.ci/run), where that is a failure.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
SCRIPT = ROOT / "scripts" / "slurm_local.sh"
pytestmark = pytest.mark.slurm


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory,
                  require: Callable[[bool, str], None]) -> Iterator[Path]:
    """A one-node cluster for the module's tests, stopped afterwards (also on failure)."""
    missing = [t for t in ("slurmctld", "slurmd", "sbatch", "munged") if not shutil.which(t)]
    require(not missing, f"SLURM tools missing: {', '.join(missing)} "
                         "(bash scripts/slurm_local.sh install)")
    require(os.geteuid() == 0, "slurmd needs root")
    require(importlib.util.find_spec("snakemake_executor_plugin_slurm") is not None,
            "snakemake-executor-plugin-slurm not installed (pip install -e '.[slurm]')")
    require(os.path.islink("/etc/slurm/slurm.conf") or not os.path.exists("/etc/slurm/slurm.conf"),
            "/etc/slurm/slurm.conf exists: a SLURM cluster is installed here")
    folder = tmp_path_factory.mktemp("cluster")
    try:
        subprocess.run(["bash", str(SCRIPT), "start", str(folder)], check=True, timeout=120)
        yield folder
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", str(folder)], timeout=120)


def _jobs() -> dict[str, dict[str, str]]:
    """Every job the controller still knows (finished ones for MinJobAge), by id."""
    out = subprocess.run(["scontrol", "-o", "show", "job"], capture_output=True, text=True,
                         check=True).stdout
    jobs = {}
    for line in out.splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        jobs[fields["JobId"]] = fields
    return jobs


def _cancel_when_trained(history: Path, comment: str, epochs: int,
                         pipeline: subprocess.Popen) -> str:
    """scancel the job with ``comment`` once ``history`` holds ``epochs`` epochs; its id."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and pipeline.poll() is None:
        lines = history.read_text().splitlines() if history.exists() else []
        if len(lines) >= epochs:
            running = [j for j, f in _jobs().items()
                       if f.get("Comment") == comment and f["JobState"] == "RUNNING"]
            assert len(running) == 1, _jobs()
            subprocess.run(["scancel", running[0]], check=True)
            return running[0]
        time.sleep(0.2)
    raise AssertionError(f"{history} never reached {epochs} epochs")


@pytest.mark.timeout(1500)
def test_slurm_profile_submits_retries_keeps_going_and_resumes(slurm_cluster, tmp_path):
    results = tmp_path / "results"
    # fit_xy cannot write its run folder (a directory stands where config.yaml goes): it fails
    # on both attempts while the tabular job goes on. Jobs: 3 (+ 2 retries), 2 at a time.
    (results / "runs/fit_xy/mlp/seed0/config.yaml").mkdir(parents=True)
    env = {**os.environ, "SBATCH_ACCOUNT": "katbench-ci", "SBATCH_PARTITION": "batch"}
    env.pop("MLFLOW_TRACKING_URI", None)
    # The quick profile (CPU) with use_gpus=true: the tabular job asks SLURM for the node's one
    # (count-only) GPU, as paper jobs do, and still trains on the CPU.
    cmd = [sys.executable, "-m", "snakemake", "--profile", str(ROOT / "profiles/slurm"),
           "--snakefile", str(ROOT / "Snakefile"), "--directory", str(tmp_path / "work"),
           "--config", "profile=quick", f"results_dir={results}", "tasks=fit_xy,tab_qsar_bio",
           "mixers=mlp", "use_gpus=true", "overrides=trainer.epochs=300",
           # no accounting database on this cluster: squeue, not sacct (profile comment)
           "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2",
           "--slurm-keep-successful-logs"]
    log = tmp_path / "snakemake.log"
    with open(log, "w") as out:
        pipeline = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            tab = results / "runs/tab_qsar_bio/mlp/seed0"
            cancelled = _cancel_when_trained(
                tab / "history.jsonl", "rule_run_group_tabular_quick_wildcards_mlp", 10, pipeline)
            pipeline.wait(timeout=1200)
        finally:
            if pipeline.poll() is None:
                pipeline.terminate()
                pipeline.wait(timeout=60)
    text = log.read_text()
    assert pipeline.returncode == 1, text[-3000:]     # one job failed; the rest finished

    # Every job went through sbatch, to the partition and account of the environment; only
    # the tabular job (pipeline.gpu: 1) asked for a GPU.
    submitted = re.findall(r"Job \d+ has been submitted with SLURM jobid (\d+) \(log: (\S+)\)",
                           text)
    jobs = _jobs()
    by_rule: dict[str, list[str]] = {}
    for job_id, _ in submitted:
        fields = jobs[job_id]
        assert fields["Partition"] == "batch" and fields["Account"] == "katbench-ci", fields
        by_rule.setdefault(fields["Comment"], []).append(job_id)
        gpu = fields.get("TresPerJob") == "gres:gpu:1"
        assert gpu == ("tabular" in fields["Comment"]), fields
    states = {rule: [jobs[j]["JobState"] for j in ids] for rule, ids in by_rule.items()}
    assert states == {
        "rule_tracking_store": ["COMPLETED"],
        "rule_run_group_function_fitting_wildcards_mlp": ["FAILED", "FAILED"],    # retried
        "rule_run_group_tabular_quick_wildcards_mlp": ["CANCELLED", "COMPLETED"],  # resumed
    }, text[-3000:]
    assert by_rule["rule_run_group_tabular_quick_wildcards_mlp"][0] == cancelled

    # The failed job: its one-line error in its SLURM log, reported missing in the summary.
    logs = dict(submitted)
    failed = Path(logs[by_rule["rule_run_group_function_fitting_wildcards_mlp"][1]]).read_text()
    assert re.search(r"katbench.run: error: Is a directory: \S+/seed0/config.yaml; ", failed), \
        failed
    assert not (results / "runs/fit_xy/mlp/seed0/metrics.json").exists()
    with open(results / "summary.csv") as f:
        assert {(r["task"], r["mixer"]) for r in csv.DictReader(f)} == {("tab_qsar_bio", "mlp")}
    summary = (results / "summary.md").read_text()
    assert re.search(r"\b1 runs? finished · 1 missing", summary), summary[:300]
    assert "- fit_xy/mlp: seed 0" in summary

    # The cancelled job stopped with a checkpoint and its retry resumed from it.
    first = Path(logs[cancelled]).read_text()
    assert re.search(r"katbench.run: stopped by SIGTERM in epoch \d+", first), first[-2000:]
    metrics = json.loads((tab / "metrics.json").read_text())
    assert metrics["epochs_done"] == 300
    assert not (tab / "checkpoint.previous.pt").exists()      # not started over
    assert [json.loads(line)["epoch"] for line in (tab / "history.jsonl").read_text()
            .splitlines()][-1] == 300
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{results / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tab_qsar_bio").experiment_id
    killed, finished = client.search_runs(
        [experiment], "attributes.run_name = 'tab_qsar_bio-mlp-s0'",
        order_by=["attribute.start_time ASC"])
    assert killed.info.status == "KILLED" and finished.info.status == "FINISHED"
    assert "RunInterrupted: stopped by SIGTERM" in killed.data.tags["katbench.error"]
    assert finished.data.tags["katbench.resumed_from"] == killed.info.run_id


# No dropout: masks drawn for half batches differ from those of whole ones (tests/test_faults.py).
TINY = ["task=tab_qsar_bio", "mixer=mlp", "trainer.epochs=3", "task.batch_size=64",
        "model.depth=1", "model.dim=8", "model.attn_dropout=0", "model.ff_dropout=0",
        "trainer.progress=none", "trainer.threads=1", "tracking.enabled=false"]


@pytest.mark.timeout(600)
def test_srun_torchrun_one_rank_per_task_equals_one_process(slurm_cluster, tmp_path):
    # docs/reliability.md's multi-node job with its two tasks on this one node: each task is a
    # torchrun agent of one rank; they meet at the c10d rendezvous on the first task's host.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    job = tmp_path / "job.sh"
    job.write_text(f"""#!/bin/bash
#SBATCH --ntasks=2 --cpus-per-task=1 --mem=4000 --output={tmp_path}/job.log
head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
srun {sys.executable} -m torch.distributed.run --nnodes="$SLURM_NTASKS" --nproc_per_node=1 \\
    --rdzv-backend=c10d --rdzv-endpoint="$head:{port}" --rdzv-id="$SLURM_JOB_ID" \\
    -m katbench.run {" ".join(TINY)} results_dir={tmp_path / "two"}
""")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    one = subprocess.Popen([sys.executable, "-m", "katbench.run", *TINY,
                            f"results_dir={tmp_path / 'one'}"], env=env, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    sbatch = subprocess.run(["sbatch", "--parsable", "--wait", str(job)], env=env,
                            capture_output=True, text=True, timeout=540)
    _, err = one.communicate(timeout=300)
    assert one.returncode == 0, err
    log = (tmp_path / "job.log").read_text()
    assert sbatch.returncode == 0, sbatch.stderr + log
    assert _jobs()[sbatch.stdout.strip()]["JobState"] == "COMPLETED"
    a, b = (json.loads((tmp_path / d / "runs/tab_qsar_bio/mlp/seed0/metrics.json").read_text())
            for d in ("one", "two"))
    assert a["world_size"] == 1 and b["world_size"] == 2
    for key in ("train_loss", "val_auc", "test_auc"):
        assert b["final"][key] == pytest.approx(a["final"][key], rel=1e-5, abs=1e-7), key
