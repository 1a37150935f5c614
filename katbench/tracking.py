"""Run folders, atomic writes, checkpoints and the MLflow logger (the one logger of katbench).

A run lives in ``<results_dir>/runs/<task>/<mixer>/seed<k>/`` with ``config.yaml``,
``metrics.json``, ``checkpoint.pt`` and any exported ``.npz`` arrays. Every file is written to a
temporary sibling and moved into place with ``os.replace``, so a reader (or a killed job) never
sees half a file. MLflow and torch are imported only where needed (the report and the pipeline's
store set-up stay light). SQLite "database is
locked" errors from parallel pipeline jobs are retried with exponential backoff, never dropped.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import torch

T = TypeVar("T")


def run_dir(results_dir: str | Path, task: str, mixer: str, seed: int) -> Path:
    """``<results_dir>/runs/<task>/<mixer>/seed<seed>``: the one place a run writes to."""
    return Path(results_dir) / "runs" / task / mixer / f"seed{seed}"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Text variant of :func:`atomic_write_bytes` (UTF-8)."""
    atomic_write_bytes(path, text.encode())


def write_json(path: Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Atomically ``torch.save`` a checkpoint (written to a temp file, then renamed)."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path, device: torch.device) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`; a broken file is a ``ValueError``."""
    import torch

    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # any unpickling failure means the same thing to the user
        raise ValueError(f"checkpoint {path} cannot be read ({type(err).__name__}); delete it "
                         "or run without resume=true") from err


def git_commit() -> str:
    """The current git commit of the source tree, or ``unknown`` outside a checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=5, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists are kept as values)."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def tracking_uri(results_dir: str | Path, uri: str | None = None) -> str:
    """Explicit ``uri``, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///<results>/mlflow.db``."""
    if uri:
        return uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{(Path(results_dir) / 'mlflow.db').resolve()}"


def with_retry(call: Callable[[], T], attempts: int = 12, base_s: float = 0.05) -> T:
    """Call ``call()``, retrying with jittered exponential backoff when the store is busy."""
    for attempt in range(attempts):
        try:
            return call()
        except Exception as err:  # noqa: BLE001 - filtered on the message just below
            busy = any(s in str(err).lower() for s in ("locked", "busy", "unique constraint",
                                                      "already exists", "temporarily"))
            if not busy or attempt == attempts - 1:
                raise
            time.sleep(base_s * 2 ** attempt * (0.5 + random.random()))
    raise AssertionError("unreachable")


class MlflowLogger:
    """One MLflow run: experiment = task, run name ``<task>-<mixer>-s<seed>``.

    Per-epoch metrics are buffered and sent with ``log_batch`` at most every ``flush_every_s``
    seconds (a 1000-epoch fitting run would otherwise spend longer in SQLite than in torch).
    """

    def __init__(self, uri: str, results_dir: Path, task: str, run_name: str,
                 flush_every_s: float = 5.0) -> None:
        import mlflow
        from mlflow.tracking import MlflowClient

        self._mlflow = mlflow
        self.client = MlflowClient(tracking_uri=uri)
        self.flush_every_s = flush_every_s
        self._buffer: list[Any] = []
        self._last_flush = time.monotonic()
        artifacts = (Path(results_dir) / "mlartifacts").resolve().as_uri()
        experiment_id = with_retry(lambda: self._experiment(task, artifacts))
        run = with_retry(lambda: self.client.create_run(experiment_id, run_name=run_name))
        self.run_id = run.info.run_id

    def _experiment(self, name: str, artifacts: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        return self.client.create_experiment(name, artifact_location=f"{artifacts}/{name}")

    def log_params(self, params: dict[str, Any]) -> None:
        """Log parameters (values stringified and cut to MLflow's 6000-character limit)."""
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in sorted(params.items())]
        for i in range(0, len(items), 100):
            chunk = items[i:i + 100]
            with_retry(lambda c=chunk: self.client.log_batch(self.run_id, params=c))

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        """Buffer one step's metrics; flush when the buffer is old or large."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._buffer += [Metric(k, float(v), now, step) for k, v in metrics.items()]
        if len(self._buffer) >= 900 or time.monotonic() - self._last_flush >= self.flush_every_s:
            self.flush()

    def flush(self) -> None:
        """Send buffered metrics (in chunks of MLflow's 1000-metric batch limit)."""
        while self._buffer:
            chunk = self._buffer[:900]
            with_retry(lambda c=chunk: self.client.log_batch(self.run_id, metrics=c))
            self._buffer = self._buffer[900:]
        self._last_flush = time.monotonic()

    def log_artifacts(self, paths: Iterable[Path]) -> None:
        """Copy files into the run's artifact store."""
        for path in paths:
            with_retry(lambda p=path: self.client.log_artifact(self.run_id, str(p)))

    def finish(self, status: str = "FINISHED") -> None:
        """Flush and close the run with ``FINISHED``, ``FAILED`` or ``KILLED``."""
        self.flush()
        with_retry(lambda: self.client.set_terminated(self.run_id, status=status))


class NullLogger:
    """Stand-in when ``tracking.enabled=false``: same interface, does nothing."""

    run_id = None

    def log_params(self, params: dict[str, Any]) -> None:
        """Ignore parameters."""

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        """Ignore metrics."""

    def log_artifacts(self, paths: Iterable[Path]) -> None:
        """Ignore artifacts."""

    def finish(self, status: str = "FINISHED") -> None:
        """Nothing to close."""


def init_store(results_dir: str | Path, uri: str | None = None) -> str:
    """Create the tracking store once (MLflow's schema migrations are not safe to race).

    The pipeline calls this before starting parallel jobs; it writes ``<results_dir>/
    tracking.ready`` holding the URI and returns the URI.
    """
    from mlflow.tracking import MlflowClient

    resolved = tracking_uri(results_dir, uri)
    Path(results_dir).mkdir(parents=True, exist_ok=True)
    client = MlflowClient(tracking_uri=resolved)
    with_retry(lambda: client.search_experiments(max_results=1))
    atomic_write_text(Path(results_dir) / "tracking.ready", resolved + "\n")
    return resolved


if __name__ == "__main__":
    import sys

    print(init_store(sys.argv[1] if len(sys.argv) > 1 else "results"))
