"""Atomic writes, retry on a busy store, concurrent MLflow runs all land."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

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


def _log_one_run(args: tuple[str, str, int]) -> str:
    uri, results, k = args
    logger = tracking.MlflowLogger(uri, Path(results), "concurrent", f"run{k}", flush_every_s=0)
    for step in range(20):
        logger.log_metrics(step, {"loss": float(k * 100 + step)})
    logger.finish()
    return logger.run_id


def test_parallel_runs_all_land_in_one_sqlite_store(tmp_path):
    uri = tracking.init_store(tmp_path)
    assert (tmp_path / "tracking.ready").read_text().strip() == uri
    with mp.get_context("spawn").Pool(4) as pool:
        run_ids = pool.map(_log_one_run, [(uri, str(tmp_path), k) for k in range(4)])
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    for k, run_id in enumerate(run_ids):
        history = client.get_metric_history(run_id, "loss")
        assert sorted(m.value for m in history) == [float(k * 100 + s) for s in range(20)]
        assert client.get_run(run_id).info.status == "FINISHED"
