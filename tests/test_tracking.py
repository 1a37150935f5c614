"""Atomic writes, retry on a busy store, concurrent MLflow runs all land."""

from __future__ import annotations

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
