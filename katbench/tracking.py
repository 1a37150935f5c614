"""Run folders, atomic writes, checkpoints and the MLflow logger (the one logger of katbench).

A run lives in ``<results_dir>/runs/<task>/<mixer>/seed<k>/`` with ``config.yaml``,
``metrics.json``, ``checkpoint.pt``, ``history.jsonl`` (the logged metrics of every epoch) and any
exported ``.npz`` arrays. Every file but the append-only history is written to a
temporary sibling and moved into place with ``os.replace``, so a reader (or a killed job) never
sees half a file. MLflow and torch are imported only where needed (the report and the pipeline's
store set-up stay light). SQLite "database is
locked" errors from parallel pipeline jobs are retried with exponential backoff, never dropped.
"""

from __future__ import annotations

import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import torch

T = TypeVar("T")


def run_dir(results_dir: str | Path, task: str, mixer: str, seed: int) -> Path:
    """``<results_dir>/runs/<task>/<mixer>/seed<seed>``: the one place a run writes to.

    A name that would lead outside the results folder (``..``, ``/``) is a ``ValueError``."""
    root = Path(results_dir)
    out = root / "runs" / task / mixer / f"seed{seed}"
    if any(part in ("", ".", "..") or "/" in part or "\\" in part
           for part in (task, mixer)) or not out.resolve().is_relative_to(root.resolve()):
        raise ValueError(f"run folder {out} would lie outside the results folder {root}; "
                         "task and mixer names must be plain names")
    return out


def inside(folder: Path, path: Path) -> Path:
    """``path`` if it lies inside ``folder``, else a ``ValueError`` (outputs stay in the run)."""
    if not Path(path).resolve().is_relative_to(Path(folder).resolve()):
        raise ValueError(f"{path} lies outside the run folder {folder}; a task's export must "
                         "write inside the folder it is given")
    return Path(path)


def prepare_run_dir(out: Path, *, resume: bool, overwrite: bool) -> None:
    """Create the run folder and make sure a new run cannot destroy an old one.

    A folder that is not writable is a ``ValueError`` naming the fix. A finished run
    (``metrics.json``) is replaced only with ``overwrite=true`` (or continued with
    ``resume=true``). The checkpoint of an unfinished run, when starting over without either,
    is kept as ``checkpoint.previous.pt`` rather than overwritten.
    """
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out, prefix=".write-test.")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ValueError(f"results folder {out} is not writable ({err.strerror or err}); set "
                         "results_dir=<a writable folder> or fix its permissions") from err
    if resume:
        return
    if (out / "metrics.json").exists() and not overwrite:
        raise ValueError(f"{out} already holds a finished run (metrics.json); pass "
                         "overwrite=true to replace it, resume=true to reuse it, or choose "
                         "another results_dir")
    if (out / HISTORY).exists():   # a new run starts a new history
        os.replace(out / HISTORY, out / f"{Path(HISTORY).stem}.previous.jsonl")
    if (out / "checkpoint.pt").exists() and not overwrite:
        os.replace(out / "checkpoint.pt", out / "checkpoint.previous.pt")
        print(f"katbench: {out}/checkpoint.pt of an unfinished run kept as "
              "checkpoint.previous.pt (use resume=true to continue a run)", file=sys.stderr)


# Settings a resumed run may change: where and how it runs and what it logs, not what it computes.
RESUMABLE_CHANGES = ("resume", "overwrite", "results_dir", "profile", "tracking.",
                     "trainer.device", "trainer.threads", "trainer.progress",
                     "trainer.checkpoint_every_s", "trainer.compile", "trainer.compile_mode",
                     "trainer.max_hours", "trainer.log_every")


def check_resumable(out: Path, config: dict[str, Any]) -> None:
    """With ``resume=true``, a ``ValueError`` when the checkpoint in ``out`` was written by a
    run of other settings (its ``config.yaml``) than ``config``: continuing it would mix two
    experiments in one run. Settings one side lacks (added since) and
    :data:`RESUMABLE_CHANGES` are not compared."""
    saved = out / "config.yaml"
    if not (out / "checkpoint.pt").exists() or not saved.exists():
        return
    import yaml

    before, now = flatten(yaml.safe_load(saved.read_text()) or {}), flatten(config)
    changed = sorted(key for key in before.keys() & now.keys() if before[key] != now[key]
                     and not key.startswith(RESUMABLE_CHANGES))
    if changed:
        differences = ", ".join(f"{key}={before[key]!r} (now {now[key]!r})" for key in changed)
        raise ValueError(f"resume=true: {out} holds a run started with {differences}; resume "
                         "it with its own settings (its config.yaml) or pass overwrite=true to "
                         "start it over")


def previous_run_id(out: Path) -> str | None:
    """The MLflow run id recorded in the run folder by the last attempt, if any."""
    path = out / "mlflow_run_id"
    return path.read_text().strip() or None if path.exists() else None


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


def write_npz(path: Path, **arrays: Any) -> Path:
    """Atomically write ``arrays`` as an uncompressed ``.npz`` (``numpy.savez``); return
    ``path``."""
    import io

    import numpy as np

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def write_json(path: Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


HISTORY = "history.jsonl"   # in a run folder: one JSON object per logged epoch


def append_history(out: Path, epoch: int, values: dict[str, float]) -> None:
    """Append ``{"epoch": epoch, **values}`` as one line to ``out/history.jsonl``.

    A resumed run appends again from its checkpoint's epoch; :func:`read_history` keeps the last
    line of each epoch, so the file never needs rewriting (an append is the one write here that
    is not atomic: a torn last line is skipped on reading).
    """
    with open(out / HISTORY, "a") as f:
        f.write(json.dumps({"epoch": int(epoch), **{k: float(v) for k, v in values.items()}})
                + "\n")


def read_history(out: Path) -> list[dict[str, float]]:
    """The per-epoch metrics of the run in ``out``, by epoch (empty without a history file)."""
    path = out / HISTORY
    if not path.exists():
        return []
    by_epoch: dict[int, dict[str, float]] = {}
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:   # a line torn by a kill mid-write
            continue
        by_epoch[int(row["epoch"])] = row
    return [by_epoch[e] for e in sorted(by_epoch)]


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


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` onto the CPU (``load_state_dict``
    moves weights and optimiser state to their parameters' device; the RNG and loader states
    must stay CPU tensors); a broken file is a ``ValueError``."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any unpickling failure means the same thing to the user
        raise ValueError(f"checkpoint {path} cannot be read ({type(err).__name__}); delete it "
                         "or run without resume=true") from err


def git_commit() -> str:
    """The current git commit of the source tree; ``$KATBENCH_GIT_COMMIT`` outside a checkout
    (a copy of the tree shipped to another machine), else ``unknown``."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=5, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return os.environ.get("KATBENCH_GIT_COMMIT", "unknown")


def hardware(device: torch.device) -> str:
    """What a run ran on, for the results table: the GPU's name, or the CPU's model and the
    number of threads torch uses."""
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU {model} ({torch.get_num_threads()} threads)"


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
    Tracking never fails a run: when the store is unreachable (a tracking server down, a full
    disk), params, tags, metrics and artifacts stay queued in order and are retried with a
    growing pause (2 s, 4 s, ... up to 5 min) at later flushes; if they still cannot be sent
    when the run ends they are written to ``<run folder>/mlflow_pending.json`` and
    ``python -m katbench.tracking sync <results_dir>`` sends them later. The run folder is the
    source of truth. A server that refuses the credentials (HTTP 401/403) is not retried: the run
    goes on, its data is saved the same way, and closing it as FINISHED raises
    :class:`TrackingAuthError` (one line, exit 2).
    """

    def __init__(self, uri: str, results_dir: Path, task: str, run_name: str,
                 flush_every_s: float = 5.0, run_folder: Path | None = None,
                 run_id: str | None = None) -> None:
        # Our queue does the retrying; MLflow's own HTTP retries would block training minutes.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        self.uri, self.task, self.run_name = uri, task, run_name
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:   # e.g. a GPU image without mlflow: queue, sync where it is
            self.client = None
        else:
            self.client = MlflowClient(tracking_uri=uri)
        self.flush_every_s = flush_every_s
        self.run_folder = run_folder
        self.run_id = run_id
        self._artifacts = (Path(results_dir) / "mlartifacts").resolve().as_uri()
        self._ops: list[list[Any]] = []       # ["params"|"tags"|"artifacts"|"status", payload]
        self._metrics: list[list[Any]] = []   # [key, value, timestamp_ms, step]
        self._last_flush = time.monotonic()
        self._failures, self._retry_at, self._warned = 0, 0.0, False
        self.refused: str | None = None    # why the server refused the credentials, if it did
        self._send()

    def _experiment(self) -> str:
        found = self.client.get_experiment_by_name(self.task)
        if found is not None:
            return found.experiment_id
        if is_remote(self.uri):
            return self.client.create_experiment(self.task)   # the server places artifacts
        return self.client.create_experiment(
            self.task, artifact_location=f"{self._artifacts}/{self.task}")

    def _apply(self, kind: str, payload: Any) -> None:
        from mlflow.entities import Metric, Param, RunTag

        rid = self.run_id
        if kind == "params":
            items = [Param(k, v) for k, v in payload]
            for i in range(0, len(items), 100):
                with_retry(lambda c=items[i:i + 100]: self.client.log_batch(rid, params=c))
        elif kind == "tags":
            tags = [RunTag(k, v) for k, v in payload]
            with_retry(lambda: self.client.log_batch(rid, tags=tags))
        elif kind == "metrics":
            metrics = [Metric(k, v, ts, step) for k, v, ts, step in payload]
            with_retry(lambda: self.client.log_batch(rid, metrics=metrics))
        elif kind == "artifacts":
            for path in payload:
                if Path(path).exists():
                    with_retry(lambda p=path: self.client.log_artifact(rid, p))
        elif kind == "status":
            with_retry(lambda: self.client.set_terminated(rid, status=payload))

    def _send(self, force: bool = False) -> bool:
        """Send what is queued, in order; False (and keep it queued) when the store is down."""
        if not force and time.monotonic() < self._retry_at:
            return False
        try:
            if self.client is None:
                raise ModuleNotFoundError("mlflow is not installed here")
            if self.run_id is None:
                experiment_id = with_retry(self._experiment)
                run = with_retry(lambda: self.client.create_run(experiment_id,
                                                                run_name=self.run_name))
                self.run_id = run.info.run_id
            while self._ops:
                self._apply(*self._ops[0])
                self._ops.pop(0)
            while self._metrics:
                self._apply("metrics", self._metrics[:900])
                del self._metrics[:900]
        except Exception as err:  # noqa: BLE001 - any store failure must not end the run
            if getattr(err, "error_code", None) in AUTH_ERRORS:
                self._refuse(str(err.error_code))
                return False
            self._failures += 1
            self._retry_at = time.monotonic() + min(300.0, 2.0 ** self._failures)
            if not self._warned:
                first = (str(err).strip().splitlines() or [""])[0][:200]
                print(f"katbench: MLflow at {self.uri} unavailable ({type(err).__name__}: "
                      f"{first}); the run goes on and its tracking data is queued and retried",
                      file=sys.stderr, flush=True)
                self._warned = True
            return False
        self._failures, self._retry_at = 0, 0.0
        return True

    def _refuse(self, code: str) -> None:
        """Stop sending for good: these credentials will not work later in the run either."""
        if self.refused is None:
            self.refused = (f"MLflow at {self.uri} refused the credentials ({code}); set "
                            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to a user of "
                            "that server with write access")
            print(f"katbench: {self.refused}; tracking data stays in the run folder",
                  file=sys.stderr, flush=True)
        self._retry_at = float("inf")

    def log_params(self, params: dict[str, Any]) -> None:
        """Log parameters (values stringified and cut to MLflow's 6000-character limit)."""
        self._ops.append(["params", [[k, str(v)[:6000]] for k, v in sorted(params.items())]])
        self._send()

    def set_tags(self, tags: dict[str, Any]) -> None:
        """Set run tags (values stringified, cut to 5000 characters)."""
        self._ops.append(["tags", [[k, str(v)[:5000]] for k, v in sorted(tags.items())]])
        self._send()

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        """Buffer one step's metrics; send when the buffer is old or large."""
        now = int(time.time() * 1000)
        self._metrics += [[k, float(v), now, step] for k, v in metrics.items()]
        if len(self._metrics) >= 900 or time.monotonic() - self._last_flush >= self.flush_every_s:
            self.flush()

    def flush(self) -> None:
        """Send buffered metrics (in chunks under MLflow's 1000-metric batch limit)."""
        self._send()
        self._last_flush = time.monotonic()

    def log_artifacts(self, paths: Iterable[Path]) -> None:
        """Copy files into the run's artifact store."""
        self._ops.append(["artifacts", [str(p) for p in paths]])
        self._send()

    def link_resumed(self, previous_run_id: str) -> None:
        """Tag this run as the continuation of ``previous_run_id`` (and that run as continued by
        this one); a previous run left RUNNING by a SIGKILL is marked KILLED."""
        self.set_tags({"katbench.resumed_from": previous_run_id})
        if not self._send(force=True):
            return
        try:
            old = with_retry(lambda: self.client.get_run(previous_run_id))
            with_retry(lambda: self.client.set_tag(previous_run_id, "katbench.resumed_by",
                                                   self.run_id))
            if old.info.status == "RUNNING":
                with_retry(lambda: self.client.set_terminated(previous_run_id, "KILLED"))
        except Exception as err:  # noqa: BLE001 - a deleted or foreign old run is only a note
            print(f"katbench: cannot update the interrupted MLflow run {previous_run_id} "
                  f"({type(err).__name__}); linked from this run only", file=sys.stderr)

    def finish(self, status: str = "FINISHED", reason: str | None = None,
               attempts: int = 3) -> None:
        """Close the run with ``FINISHED``, ``FAILED`` or ``KILLED`` (``reason`` as the tag
        ``katbench.error``); what cannot be sent after ``attempts`` tries goes to
        ``mlflow_pending.json`` in the run folder. Credentials the server refused make a
        FINISHED close raise :class:`TrackingAuthError` once that file is written (a FAILED or
        KILLED close keeps the run's own error)."""
        if reason:
            self._ops.append(["tags", [["katbench.error", reason[:5000]]]])
        self._ops.append(["status", status])
        for attempt in range(attempts):
            if self.refused is None and self._send(force=True):
                return
            if self.refused is None and attempt < attempts - 1:
                time.sleep(min(4.0, 2.0 ** attempt))
        path = self.save_pending()
        if self.refused is not None and status == "FINISHED":
            where = (f"; the run's results are in {self.run_folder}, its tracking data in "
                     f"{path.name}: send it with `python -m katbench.tracking sync "
                     f"{self.run_folder.parents[3]}`") if path else ""
            raise TrackingAuthError(self.refused + where)

    def save_pending(self) -> Path | None:
        """Write what is still queued to ``<run folder>/mlflow_pending.json``."""
        if self.run_folder is None:
            return None
        path = self.run_folder / "mlflow_pending.json"
        folder = self.run_folder.resolve()
        # Artifacts inside the run folder are kept relative to it: the folder may be synced
        # from another machine or path (a results folder copied back from a GPU host).
        ops = [[kind, [os.path.relpath(a, folder) if Path(a).resolve().is_relative_to(folder)
                       else a for a in payload]] if kind == "artifacts" else [kind, payload]
               for kind, payload in self._ops]
        write_json(path, {"uri": self.uri, "experiment": self.task, "run_name": self.run_name,
                          "run_id": self.run_id, "ops": ops, "metrics": self._metrics})
        why = "refused the credentials" if self.refused else "still unavailable"
        print(f"katbench: MLflow {why}; {len(self._metrics)} metric values and "
              f"{len(self._ops)} updates saved to {path}; send them later with "
              f"`python -m katbench.tracking sync {self.run_folder.parents[3]}`",
              file=sys.stderr, flush=True)
        return path


AUTH_ERRORS = ("UNAUTHENTICATED", "PERMISSION_DENIED")   # MLflow's codes for HTTP 401 and 403


class TrackingAuthError(ValueError):
    """The tracking server refused the credentials: a user error, shown as one line."""


def is_remote(uri: str) -> bool:
    """Whether ``uri`` names a tracking server rather than a local store."""
    return uri.startswith(("http://", "https://", "databricks"))


def sync_pending(results_dir: str | Path) -> int:
    """Send every ``mlflow_pending.json`` under ``<results_dir>/runs`` to its store; a file
    that was sent completely is removed. Returns how many are still pending.

    A run queued for a tracking server goes to that server; one queued for a local store goes
    to this results folder's store (:func:`tracking_uri`), so run folders brought back from
    another machine (one without MLflow, say) land beside the local runs. Relative artifact
    paths are taken from the run folder. Credentials the server refuses raise
    :class:`TrackingAuthError` (nothing more is tried)."""
    left = 0
    for path in sorted(Path(results_dir).glob("runs/*/*/*/mlflow_pending.json")):
        data = json.loads(path.read_text())
        remote = is_remote(data["uri"])
        uri = data["uri"] if remote else tracking_uri(results_dir)
        run_id = data["run_id"] if remote or uri == data["uri"] else None
        logger = MlflowLogger(uri, Path(results_dir), data["experiment"],
                              data["run_name"], flush_every_s=0, run_id=run_id)
        logger._ops = [[kind, [str(path.parent / a) for a in payload]]
                       if kind == "artifacts" else [kind, payload]
                       for kind, payload in data["ops"]]
        logger._metrics = data["metrics"]
        if logger._send(force=True):
            path.unlink()
        elif logger.refused is not None:
            raise TrackingAuthError(logger.refused)
        else:
            left += 1
    return left


class NullLogger:
    """Stand-in when ``tracking.enabled=false`` and on ranks other than 0: same interface."""

    run_id = None

    def log_params(self, params: dict[str, Any]) -> None:
        """Ignore parameters."""

    def set_tags(self, tags: dict[str, Any]) -> None:
        """Ignore tags."""

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        """Ignore metrics."""

    def log_artifacts(self, paths: Iterable[Path]) -> None:
        """Ignore artifacts."""

    def link_resumed(self, previous_run_id: str) -> None:
        """Nothing to link."""

    def finish(self, status: str = "FINISHED", reason: str | None = None) -> None:
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
    if sys.argv[1:2] == ["sync"]:
        try:
            sys.exit(1 if sync_pending(sys.argv[2] if len(sys.argv) > 2 else "results") else 0)
        except TrackingAuthError as err:
            print(f"katbench.tracking: error: {err}", file=sys.stderr)
            sys.exit(2)
    print(init_store(sys.argv[1] if len(sys.argv) > 1 else "results"))
