"""Killed runs resume to the same numbers; 2 gloo ranks train like 1 process, on one node and
as 2 nodes of one process each (subprocess tests).

One tiny mini-batch task (TabTransformer on the shipped QSAR table: 11 batches per epoch, with
dropout, so RNG and loader states matter). Processes run side by side to keep the wall time low.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

TINY = ["task=tab_qsar_bio", "mixer=mlp", "trainer.epochs=12", "task.batch_size=64",
        "model.depth=1", "model.dim=8", "trainer.progress=none", "trainer.threads=1",
        "trainer.checkpoint_every_s=0"]
METRIC_KEYS = ("train_loss", "val_auc", "test_auc", "lr")


def _start(results: Path, *extra: str, torchrun: list[str] | None = None) -> subprocess.Popen:
    """``python -m katbench.run`` on the tiny task, or under ``torchrun`` with those arguments."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [sys.executable, "-m", "katbench.run", *TINY, f"results_dir={results}", *extra]
    if torchrun is not None:
        cmd[1:3] = ["-m", "torch.distributed.run", *torchrun, "-m", "katbench.run"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _finish(proc: subprocess.Popen) -> tuple[int, str]:
    _, err = proc.communicate(timeout=240)
    return proc.returncode, err


def _checkpoint_epoch(path: Path) -> int:
    try:
        return torch.load(path, weights_only=True)["state"]["epoch"]
    except Exception:  # noqa: BLE001 - not written yet
        return -1


def _kill_when(proc: subprocess.Popen, ckpt: Path, sig: int, epoch: int = 3) -> None:
    deadline = time.monotonic() + 180
    while _checkpoint_epoch(ckpt) < epoch:
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(sig)


def _metrics(results: Path) -> dict:
    return json.loads((results / "runs/tab_qsar_bio/mlp/seed0/metrics.json").read_text())


def _same(a: dict, b: dict) -> None:
    assert {k: a["final"][k] for k in METRIC_KEYS} == {k: b["final"][k] for k in METRIC_KEYS}
    assert a["best"] == b["best"] and a["epochs_done"] == b["epochs_done"] == 12


def test_sigkill_and_sigterm_resume_to_the_uninterrupted_metrics(tmp_path):
    ref, killed, termed = tmp_path / "ref", tmp_path / "kill", tmp_path / "term"
    ckpt = "runs/tab_qsar_bio/mlp/seed0/checkpoint.pt"
    procs = [_start(ref, "tracking.enabled=false"), _start(killed)]
    _kill_when(procs[1], killed / ckpt, signal.SIGKILL)
    # Started once the other is killed: waiting on both at once, a loaded machine could let
    # this one finish all its epochs before its signal was sent.
    procs.append(_start(termed))
    _kill_when(procs[2], termed / ckpt, signal.SIGTERM)
    (rc_ref, err_ref), (rc_kill, _), (rc_term, err_term) = map(_finish, procs)
    assert rc_ref == 0, err_ref
    assert rc_kill == -signal.SIGKILL
    assert rc_term == 128 + signal.SIGTERM, err_term
    assert "katbench.run: stopped by SIGTERM in epoch" in err_term
    assert "run again with resume=true to continue" in err_term
    assert "Traceback" not in err_term
    cut = torch.load(termed / ckpt, weights_only=True)["state"]
    assert 3 <= cut["epoch"] < 12
    resumed = [_start(killed, "resume=true"), _start(termed, "resume=true")]
    for rc, err in map(_finish, resumed):
        assert rc == 0, err
    _same(_metrics(killed), _metrics(ref))
    _same(_metrics(termed), _metrics(ref))

    from mlflow.tracking import MlflowClient

    for results, first_status in ((killed, "KILLED"), (termed, "KILLED")):
        client = MlflowClient(tracking_uri=f"sqlite:///{results / 'mlflow.db'}")
        runs = client.search_runs([client.get_experiment_by_name("tab_qsar_bio").experiment_id],
                                  order_by=["attribute.start_time ASC"])
        first, second = runs
        assert first.info.status == first_status and second.info.status == "FINISHED"
        assert second.data.tags["katbench.resumed_from"] == first.info.run_id
        assert first.data.tags["katbench.resumed_by"] == second.info.run_id
    first_term = MlflowClient(tracking_uri=f"sqlite:///{termed / 'mlflow.db'}").search_runs(
        ["1"], order_by=["attribute.start_time ASC"])[0]
    assert "RunInterrupted: stopped by SIGTERM" in first_term.data.tags["katbench.error"]


# No dropout: masks drawn for half batches differ from those of whole ones. 685 training rows in
# batches of 64 end with an odd batch: the ranks' shares are weighted.
NO_DROPOUT = ["tracking.enabled=false", "trainer.epochs=3", "model.attn_dropout=0",
              "model.ff_dropout=0"]


def _same_as_one_process(one: Path, two: Path) -> None:
    a, b = _metrics(one), _metrics(two)
    assert b["world_size"] == 2 and a["world_size"] == 1
    for key in METRIC_KEYS:
        assert b["final"][key] == pytest.approx(a["final"][key], rel=1e-5, abs=1e-7), key
    assert b["best"]["epoch"] == a["best"]["epoch"]


def test_two_gloo_ranks_equal_one_process_with_the_same_global_batch(tmp_path):
    one = _start(tmp_path / "one", *NO_DROPOUT)
    two = _start(tmp_path / "two", *NO_DROPOUT, torchrun=["--standalone", "--nproc_per_node=2"])
    for rc, err in map(_finish, (one, two)):
        assert rc == 0, err
    _same_as_one_process(tmp_path / "one", tmp_path / "two")


@pytest.mark.multinode
def test_two_nodes_of_one_rank_equal_one_process(tmp_path):
    # What a 2-node cluster job runs (docs/reliability.md), both "nodes" on this machine: each
    # torchrun joins the c10d rendezvous at the endpoint; the one that gets there first hosts it.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    one = _start(tmp_path / "one", *NO_DROPOUT)
    nodes = [_start(tmp_path / "two", *NO_DROPOUT, torchrun=[
        "--nnodes=2", "--nproc_per_node=1", f"--node_rank={k}", "--rdzv-backend=c10d",
        f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-id=katbench-test"]) for k in (0, 1)]
    for rc, err in map(_finish, (one, *nodes)):
        assert rc == 0, err
    _same_as_one_process(tmp_path / "one", tmp_path / "two")
