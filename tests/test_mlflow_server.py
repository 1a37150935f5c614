"""Runs against a real `mlflow server --app-name basic-auth` on 127.0.0.1 (SQLite backend,
artifacts in a temp folder): right credentials log everything, wrong ones are one line and exit 2
with the run's results kept; a server killed mid-run loses nothing once `katbench.tracking sync`
has run.

Skipped without the MLflow server and Flask-WTF (`mlflow[auth]`), unless
KATBENCH_CLUSTER_TESTS=require (.ci/run), where that is a failure.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from katbench import tracking

pytestmark = pytest.mark.mlflow_server
RUN = ["task=tab_qsar_bio", "mixer=mlp", "profile=quick", "model.depth=1", "model.dim=8",
       "trainer.threads=1", "trainer.progress=none", "tracking.flush_every_s=0"]
ADMIN, PASSWORD = "admin", "katbench-test-password"   # basic auth asks 12 characters or more
CREDENTIALS = {"MLFLOW_TRACKING_USERNAME": ADMIN, "MLFLOW_TRACKING_PASSWORD": PASSWORD}


class Server:
    """``mlflow server`` with basic auth on 127.0.0.1, in its own process group."""

    def __init__(self, folder: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.folder = folder
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log = None

    def start(self) -> None:
        """Start (or restart, on the same stores and port) and wait until /health answers."""
        self.folder.mkdir(parents=True, exist_ok=True)
        ini = self.folder / "basic_auth.ini"
        ini.write_text(f"[mlflow]\ndefault_permission = READ\n"
                       f"database_uri = sqlite:///{self.folder / 'auth.db'}\n"
                       f"admin_username = {ADMIN}\nadmin_password = {PASSWORD}\n"
                       # without it every request hashes the password again (PBKDF2)
                       "auth_cache_ttl_seconds = 60\n"
                       "authorization_function = "
                       "mlflow.server.auth:authenticate_request_basic_auth\n")
        env = {**os.environ, "MLFLOW_FLASK_SERVER_SECRET_KEY": "katbench-test-secret",
               "MLFLOW_AUTH_CONFIG_PATH": str(ini)}
        cmd = [sys.executable, "-m", "mlflow", "server", "--app-name", "basic-auth",
               "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
               "--backend-store-uri", f"sqlite:///{self.folder / 'mlflow.db'}",
               "--artifacts-destination", str(self.folder / "artifacts")]
        self.log = open(self.folder / "server.log", "a")   # noqa: SIM115 - closed by kill()
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True, cwd=self.folder)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.folder / "server.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=5):
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.5)
        raise AssertionError(f"mlflow server did not answer in 240 s: {self.folder}/server.log")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole server (uvicorn and its worker), wait for it, SIGKILL after 10 s."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        if self.log is not None:
            self.log.close()
        self.proc, self.log = None, None


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory,
           require: Callable[[bool, str], None]) -> Iterator[Server]:
    """One basic-auth server for the module's tests, stopped at the end (also on failure)."""
    require(importlib.util.find_spec("mlflow.server") is not None,
            "the MLflow server is not installed (pip install mlflow)")
    require(importlib.util.find_spec("flask_wtf") is not None,
            "basic auth needs Flask-WTF (pip install 'mlflow[auth]')")
    srv = Server(tmp_path_factory.mktemp("mlflow_server"))
    try:
        srv.start()
        yield srv
    finally:
        srv.kill(signal.SIGTERM)


def _env(uri: str | None = None, **extra: str) -> dict[str, str]:
    """This environment without MLflow settings, plus the tracking URI and ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
    return {**env, **({"MLFLOW_TRACKING_URI": uri} if uri else {}), "OMP_NUM_THREADS": "1",
            **extra}


def _run(results: Path, uri: str, *extra: str, **env: str) -> subprocess.Popen:
    """A tiny tabular run logging to ``uri``; credentials only those given in ``env``."""
    return subprocess.Popen([sys.executable, "-m", "katbench.run", *RUN,
                             f"results_dir={results}", *extra], env=_env(uri, **env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _sync(results: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "katbench.tracking", "sync", str(results)],
                          env=_env(**env), capture_output=True, text=True, timeout=300)


@pytest.fixture
def client(server: Server, monkeypatch: pytest.MonkeyPatch):
    """An MlflowClient of the server, logged in as the admin."""
    from mlflow.tracking import MlflowClient

    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    return MlflowClient(tracking_uri=server.uri)


def _run_id(folder: Path) -> str:
    return (folder / "mlflow_run_id").read_text().strip()


def _assert_complete(client, run_id: str, folder: Path, tmp_path: Path) -> None:
    """The server holds the run of ``folder`` whole: FINISHED, every param of its config,
    every logged epoch of every metric exactly once, its artifacts byte for byte."""
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    config = yaml.safe_load((folder / "config.yaml").read_text())
    expected = {k: str(v) for k, v in tracking.flatten(config).items()}
    assert expected.items() <= run.data.params.items()
    history = tracking.read_history(folder)
    assert [row["epoch"] for row in history] == list(range(1, len(history) + 1))
    for key in set(history[0]) - {"epoch"}:
        logged = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
        assert logged == [(row["epoch"], row[key]) for row in history], key
    assert {"config.yaml", "metrics.json"} <= {a.path for a in
                                               client.list_artifacts(run.info.run_id)}
    for name in ("config.yaml", "metrics.json"):
        got = client.download_artifacts(run.info.run_id, name, str(tmp_path))
        assert Path(got).read_bytes() == (folder / name).read_bytes(), name


@pytest.mark.timeout(900)
def test_basic_auth_right_credentials_log_wrong_ones_exit_2(server, client, tmp_path):
    good, bad = tmp_path / "good", tmp_path / "bad"
    runs = [_run(good, server.uri, "trainer.epochs=5", **CREDENTIALS),
            _run(bad, server.uri, "trainer.epochs=5", MLFLOW_TRACKING_USERNAME=ADMIN,
                 MLFLOW_TRACKING_PASSWORD="not-the-password")]
    (_, good_err), (_, bad_err) = (r.communicate(timeout=300) for r in runs)
    assert runs[0].returncode == 0, good_err
    good_folder = tracking.run_dir(good, "tab_qsar_bio", "mlp", 0)
    _assert_complete(client, _run_id(good_folder), good_folder, tmp_path)

    assert runs[1].returncode == 2, bad_err
    errors = [line for line in bad_err.splitlines() if line.startswith("katbench.run: error:")]
    assert len(errors) == 1 and "Traceback" not in bad_err, bad_err
    assert "refused the credentials (UNAUTHENTICATED); set MLFLOW_TRACKING_USERNAME and " \
           "MLFLOW_TRACKING_PASSWORD" in errors[0]
    folder = tracking.run_dir(bad, "tab_qsar_bio", "mlp", 0)
    assert json.loads((folder / "metrics.json").read_text())["epochs_done"] == 5
    assert len(tracking.read_history(folder)) == 5

    # Without credentials `sync` is refused the same way; with them it sends the whole run.
    refused = _sync(bad)
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.strip().splitlines()[-1].startswith(
        f"katbench.tracking: error: MLflow at {server.uri} refused the credentials"), \
        refused.stderr
    assert (folder / "mlflow_pending.json").exists()
    sync = _sync(bad, **CREDENTIALS)
    assert sync.returncode == 0, sync.stderr
    assert not (folder / "mlflow_pending.json").exists()
    # The refused run never got an id: sync created it, beside the good run.
    (synced,) = [r for r in client.search_runs(
        [client.get_experiment_by_name("tab_qsar_bio").experiment_id],
        "attributes.run_name = 'tab_qsar_bio-mlp-s0'") if r.info.run_id != _run_id(good_folder)
        and r.data.params.get("results_dir") == str(bad)]
    _assert_complete(client, synced.info.run_id, folder, tmp_path)


@pytest.mark.timeout(900)
def test_a_server_killed_mid_run_loses_nothing_after_sync(server, client, tmp_path):
    results = tmp_path / "results"
    folder = tracking.run_dir(results, "tab_qsar_bio", "mlp", 0)
    run = _run(results, server.uri, "trainer.epochs=200", **CREDENTIALS)
    deadline = time.monotonic() + 300
    while len(tracking.read_history(folder)) < 10:   # some epochs sent, most still to come
        assert run.poll() is None and time.monotonic() < deadline, run.communicate()
        time.sleep(0.1)
    run_id = _run_id(folder)
    assert client.get_metric_history(run_id, "train_loss")
    server.kill()                                    # SIGKILL: a crash, nothing flushed
    _, err = run.communicate(timeout=300)
    assert run.returncode == 0, err                  # the run finishes without its server
    assert f"katbench: MLflow at {server.uri} unavailable" in err
    assert f"send them later with `python -m katbench.tracking sync {results}`" in err
    assert len(tracking.read_history(folder)) == 200 and (folder / "metrics.json").exists()
    pending = json.loads((folder / "mlflow_pending.json").read_text())
    assert pending["run_id"] == run_id and pending["metrics"]

    server.start()                                   # same stores, same port
    sync = _sync(results, **CREDENTIALS)
    assert sync.returncode == 0, sync.stderr
    assert not (folder / "mlflow_pending.json").exists()
    _assert_complete(client, run_id, folder, tmp_path)
