"""Atomic writes, retry on a busy store, concurrent MLflow runs all land."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from katbench import tracking


def test_atomic_write_replaces_whole_file_and_leaves_no_temporaries(tmp_path):
    path = tmp_path / "deep" / "metrics.json"
    tracking.write_json(path, {"a": 1})
    tracking.write_json(path, {"a": 2})
    assert path.read_text() == '{\n  "a": 2\n}\n'
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]


def test_atomic_write_failure_keeps_the_old_file(tmp_path):
    path = tmp_path / "metrics.json"
    tracking.write_json(path, {"ok": True})
    with pytest.raises(TypeError):
        tracking.write_json(path, {"bad": object()})
    assert path.read_text() == '{\n  "ok": true\n}\n'


def test_with_retry_retries_busy_errors_only():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("(sqlite3.OperationalError) database is locked")
        return "done"

    assert tracking.with_retry(flaky, base_s=0.001) == "done" and len(calls) == 3
    with pytest.raises(ValueError, match="bad"):
        tracking.with_retry(lambda: (_ for _ in ()).throw(ValueError("bad")), base_s=0.001)


def test_tracking_uri_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.tracking_uri(tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking.tracking_uri(tmp_path) == "http://127.0.0.1:5000"
    assert tracking.tracking_uri(tmp_path, "file:///x") == "file:///x"


def test_flatten_nests_with_dots():
    assert tracking.flatten({"a": {"b": 1, "c": [1, 2]}, "d": None}) == {
        "a.b": 1, "a.c": [1, 2], "d": None}


LOG_ONE_RUN = """
import sys
from pathlib import Path
from katbench import tracking
uri, results, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
logger = tracking.MlflowLogger(uri, Path(results), "concurrent", f"run{k}", flush_every_s=0)
for step in range(10):
    logger.log_metrics(step, {"loss": float(k * 100 + step)})
logger.finish()
print(logger.run_id)
"""


def test_parallel_runs_all_land_in_one_sqlite_store(tmp_path):
    uri = tracking.init_store(tmp_path)
    assert (tmp_path / "tracking.ready").read_text().strip() == uri
    # Six separate processes with their own SQLite connections, as parallel pipeline jobs have.
    procs = [subprocess.Popen([sys.executable, "-c", LOG_ONE_RUN, uri, str(tmp_path), str(k)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for k in range(6)]
    run_ids = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
        run_ids.append(out.strip().splitlines()[-1])
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    for k, run_id in enumerate(run_ids):
        history = client.get_metric_history(run_id, "loss")
        assert sorted(m.value for m in history) == [float(k * 100 + s) for s in range(10)]
        assert client.get_run(run_id).info.status == "FINISHED"


class _Outage:
    """Wraps a client method so it raises ConnectionError while ``down`` is true."""

    def __init__(self, method):
        self.method, self.down, self.calls = method, True, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.down:
            raise ConnectionError("tracking server is down")
        return self.method(*args, **kwargs)


def test_outage_queues_everything_and_sends_it_in_order_when_back(tmp_path, capsys):
    uri = tracking.init_store(tmp_path)
    logger = tracking.MlflowLogger(uri, tmp_path, "outage", "r", flush_every_s=0,
                                   run_folder=tmp_path)
    outage = _Outage(logger.client.log_batch)
    logger.client.log_batch = outage
    logger.log_params({"a": 1})
    for step in range(5):
        logger.log_metrics(step, {"loss": float(step)})
    assert "unavailable (ConnectionError: tracking server is down)" in capsys.readouterr().err
    assert outage.calls == 1      # later flushes wait for the backoff instead of hammering
    outage.down = False
    logger.finish()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(logger.run_id)
    assert run.info.status == "FINISHED" and run.data.params == {"a": "1"}
    assert [m.value for m in client.get_metric_history(logger.run_id, "loss")] == \
        [0.0, 1.0, 2.0, 3.0, 4.0]
    assert not (tmp_path / "mlflow_pending.json").exists()


def test_pending_file_is_synced_later(tmp_path, monkeypatch):
    uri = tracking.init_store(tmp_path)
    folder = tracking.run_dir(tmp_path, "t", "mlp", 0)
    folder.mkdir(parents=True)
    logger = tracking.MlflowLogger(uri, tmp_path, "t", "t-mlp-s0", flush_every_s=0,
                                   run_folder=folder)
    logger.client.log_batch = _Outage(logger.client.log_batch)
    logger.client.set_terminated = _Outage(logger.client.set_terminated)
    logger.log_metrics(1, {"loss": 0.5})
    monkeypatch.setattr(tracking.time, "sleep", lambda s: None)
    logger.finish("FINISHED")
    assert (folder / "mlflow_pending.json").exists()
    assert tracking.sync_pending(tmp_path) == 0
    assert not (folder / "mlflow_pending.json").exists()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    assert client.get_run(logger.run_id).info.status == "FINISHED"
    assert [m.value for m in client.get_metric_history(logger.run_id, "loss")] == [0.5]


def test_run_dir_stays_inside_the_results_folder(tmp_path):
    with pytest.raises(ValueError, match="would lie outside the results folder"):
        tracking.run_dir(tmp_path, "..", "mlp", 0)
    with pytest.raises(ValueError, match="lies outside the run folder"):
        tracking.inside(tmp_path / "run", tmp_path / "elsewhere.npz")


def test_without_mlflow_a_run_queues_and_syncs_into_the_folder_it_was_moved_to(
        tmp_path, monkeypatch, capsys):
    # A GPU image without mlflow: everything is queued in the run folder; once the folder is
    # copied to another results folder, `sync` sends it to that folder's store, artifacts
    # taken from the run folder.
    monkeypatch.setitem(sys.modules, "mlflow", None)
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    monkeypatch.setattr(tracking.time, "sleep", lambda s: None)
    remote = tmp_path / "gpu"
    folder = tracking.run_dir(remote, "t", "grkan", 1)
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text("{}")
    logger = tracking.MlflowLogger(tracking.tracking_uri(remote), remote, "t", "t-grkan-s1",
                                   flush_every_s=0, run_folder=folder)
    logger.log_params({"lr": 0.1})
    logger.log_metrics(1, {"loss": 0.25})
    logger.log_artifacts([folder / "metrics.json"])
    logger.finish("FINISHED")
    assert "mlflow is not installed here" in capsys.readouterr().err
    pending = json.loads((folder / "mlflow_pending.json").read_text())
    assert ["artifacts", ["metrics.json"]] in pending["ops"]      # relative to the folder
    monkeypatch.delitem(sys.modules, "mlflow")
    monkeypatch.delitem(sys.modules, "mlflow.tracking")
    local = tmp_path / "here"
    shutil.copytree(remote / "runs", local / "runs")
    shutil.rmtree(remote)
    assert tracking.sync_pending(local) == 0
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking.tracking_uri(local))
    (run,) = client.search_runs([client.get_experiment_by_name("t").experiment_id])
    assert run.info.status == "FINISHED" and run.data.params == {"lr": "0.1"}
    assert run.data.metrics == {"loss": 0.25}
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["metrics.json"]


def test_git_commit_outside_a_checkout_comes_from_the_environment(monkeypatch):
    def no_git(*args, **kwargs):
        raise OSError("no git")

    monkeypatch.setattr(tracking.subprocess, "run", no_git)
    monkeypatch.setenv("KATBENCH_GIT_COMMIT", "abc123")
    assert tracking.git_commit() == "abc123"
    monkeypatch.delenv("KATBENCH_GIT_COMMIT")
    assert tracking.git_commit() == "unknown"


def test_hardware_names_the_cpu_and_its_threads():
    import torch

    name = tracking.hardware(torch.device("cpu"))
    assert name.startswith("CPU ") and name.endswith(f"({torch.get_num_threads()} threads)")


def test_history_keeps_the_last_line_of_each_epoch_and_skips_a_torn_line(tmp_path):
    assert tracking.read_history(tmp_path) == []
    for epoch, loss in ((1, 0.9), (2, 0.5), (3, 0.4)):
        tracking.append_history(tmp_path, epoch, {"train_loss": loss})
    for epoch, loss in ((3, 0.3), (4, 0.2)):          # resumed from the epoch-2 checkpoint
        tracking.append_history(tmp_path, epoch, {"train_loss": loss})
    with open(tmp_path / tracking.HISTORY, "a") as f:
        f.write('{"epoch": 5, "train_lo')             # killed mid-write
    assert tracking.read_history(tmp_path) == [
        {"epoch": 1, "train_loss": 0.9}, {"epoch": 2, "train_loss": 0.5},
        {"epoch": 3, "train_loss": 0.3}, {"epoch": 4, "train_loss": 0.2}]


@pytest.mark.parametrize("flags", [{"resume": False, "overwrite": False},
                                   {"resume": False, "overwrite": True}])
def test_a_run_that_starts_over_moves_the_old_history_aside(tmp_path, flags):
    tracking.append_history(tmp_path, 7, {"train_loss": 0.1})
    old = (tmp_path / tracking.HISTORY).read_text()
    tracking.prepare_run_dir(tmp_path, **flags)
    assert tracking.read_history(tmp_path) == []
    assert (tmp_path / "history.previous.jsonl").read_text() == old
    tracking.append_history(tmp_path, 1, {"train_loss": 0.2})
    tracking.prepare_run_dir(tmp_path, resume=True, overwrite=False)
    assert tracking.read_history(tmp_path) == [{"epoch": 1, "train_loss": 0.2}]
