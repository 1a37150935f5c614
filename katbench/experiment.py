"""One experiment end to end: run folder, task, MLflow run, :func:`katbench.train.fit`, exports.

:func:`run_experiment` is what ``python -m katbench.run`` calls once per (task, mixer, seed).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from katbench import distributed
from katbench.train import RunInterrupted, TrainerSettings, fit, seed_everything


def export_rationals(model: torch.nn.Module, path: Path) -> Path | None:
    """Save every submodule's rational coefficients (``numerator``/``denominator``) as ``.npz``.

    Keys are ``<module>.numerator`` / ``<module>.denominator`` (shape ``(groups, order)``) and
    ``<module>.variant``; the report evaluates them with the reference op to plot the learned
    functions. Returns ``None`` when the model has no rational layer (mlp, kan).
    """
    arrays: dict[str, np.ndarray] = {}
    for name, module in model.named_modules():
        num, den = getattr(module, "numerator", None), getattr(module, "denominator", None)
        if isinstance(num, torch.Tensor) and isinstance(den, torch.Tensor):
            arrays[f"{name}.numerator"] = num.detach().double().cpu().numpy()
            arrays[f"{name}.denominator"] = den.detach().double().cpu().numpy()
            arrays[f"{name}.variant"] = np.array(str(getattr(module, "variant", "")))
    if not arrays:
        return None
    from katbench.tracking import write_npz

    return write_npz(path, **arrays)


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run_experiment(cfg: Any) -> dict[str, Any]:
    """Run one configured experiment end to end and return its ``metrics.json`` content.

    Validates the settings, joins the ``torchrun`` group if any, seeds, builds the task (so that
    data errors leave the results folder untouched), prepares the run folder (never destroying a
    previous run: :func:`katbench.tracking.prepare_run_dir`), writes ``config.yaml``, opens the
    MLflow run (linked to the interrupted one on resume), trains with :func:`fit`, exports
    arrays/plots, writes ``metrics.json`` last (its presence means the run finished) and closes
    the MLflow run as FINISHED, or KILLED (stopped by a signal) / FAILED (with the reason as tag
    ``katbench.error``). Only rank 0 writes files and talks to MLflow.
    """
    from katbench import tracking
    from katbench.tasks import build_task

    settings, rank = _runtime(cfg)
    run = _RunId(str(cfg.task.name), str(cfg.get("label") or cfg.mixer.name), int(cfg.seed))
    out = tracking.run_dir(cfg.results_dir, run.task, run.mixer, run.seed)
    every = int(cfg.tracking.log_every)
    if every < 1:
        raise ValueError(f"tracking.log_every={every} is invalid; set it to an integer >= 1")
    seed_everything(run.seed)
    # The task is built first: a bad data file or setting stops the run before anything in the
    # results folder is created or moved.
    spec = build_task(cfg)
    _prepare_run_dir(cfg, out, rank)
    n_params = sum(p.numel() for p in spec.model.parameters() if p.requires_grad)
    logger = _open_logger(cfg, out, run, rank)
    _log_params(cfg, logger, n_params, settings.device, rank)

    def log(epoch: int, values: dict[str, float]) -> None:
        if epoch % every == 0 or epoch == settings.epochs:
            logger.log_metrics(epoch, values)
            if rank.is_main:
                tracking.append_history(out, epoch, values)

    try:
        result, exported, wall = _train_and_export(spec, settings, out, bool(cfg.resume), log,
                                                   run, rank)
    except BaseException as err:
        killed = isinstance(err, (KeyboardInterrupt, RunInterrupted))
        logger.finish("KILLED" if killed else "FAILED",
                      reason=f"{type(err).__name__}: {err}".strip()[:2000])
        raise
    metrics = _metrics(cfg, run, spec, result, n_params, wall, torch.device(settings.device),
                       rank, logger.run_id)
    if rank.is_main:
        _write_finished(out, metrics, exported, logger)
    logger.finish("FINISHED")
    return metrics


def _runtime(cfg: Any) -> tuple[TrainerSettings, distributed.Rank]:
    """The trainer settings (their device resolved) and this process's rank, after joining the
    ``torchrun`` group if any and setting the CPU thread count."""
    settings = TrainerSettings.from_config(cfg.trainer)
    rank, device = distributed.init(settings.resolve_device())
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    return dataclasses.replace(settings, device=str(device)), rank


def _prepare_run_dir(cfg: Any, out: Path, rank: distributed.Rank) -> None:
    """Check that a resumed run's folder matches the config, then (rank 0) create or clear the
    run folder as :func:`katbench.tracking.prepare_run_dir` allows."""
    from omegaconf import OmegaConf

    from katbench import tracking

    if cfg.resume:
        tracking.check_resumable(out, OmegaConf.to_container(cfg, resolve=True))
    if rank.is_main:
        tracking.prepare_run_dir(out, resume=bool(cfg.resume), overwrite=bool(cfg.overwrite))


def _log_params(cfg: Any, logger: Any, n_params: int, device: str,
                rank: distributed.Rank) -> None:
    """The flattened config plus the parameter count, commit, torch version and device."""
    from omegaconf import OmegaConf

    from katbench import tracking

    logger.log_params({**tracking.flatten(OmegaConf.to_container(cfg, resolve=True)),
                       "params": n_params, "git_commit": tracking.git_commit(),
                       "torch_version": torch.__version__, "device": device,
                       "world_size": rank.world})


def _metrics(cfg: Any, run: _RunId, spec: Any, result: dict[str, Any], n_params: int,
             wall: float, device: torch.device, rank: distributed.Rank,
             mlflow_run_id: str | None) -> dict[str, Any]:
    """The content of ``metrics.json``: which run, fit's result and how and where it ran."""
    from katbench import tracking

    return {"task": run.task, "family": str(cfg.task.family), "mixer": run.mixer,
            "seed": run.seed, "metric": spec.metric, "higher_is_better": spec.higher_is_better,
            **result, "params": n_params, "wall_time_s": wall,
            "peak_memory_mb": _peak_memory_mb(device), "device": str(device),
            "hardware": tracking.hardware(device), "git_commit": tracking.git_commit(),
            "world_size": rank.world, "torch_version": torch.__version__,
            "mlflow_run_id": mlflow_run_id}


def _write_finished(out: Path, metrics: dict[str, Any], exported: list[Path],
                    logger: Any) -> None:
    """The run's plots, then ``metrics.json`` (last: it marks the run finished), and the files
    as MLflow artifacts."""
    from katbench import tracking
    from katbench.report import plot_run

    plots = plot_run(out)
    tracking.write_json(out / "metrics.json", metrics)
    logger.log_artifacts([out / "config.yaml", out / "metrics.json", *exported, *plots])


class _RunId(NamedTuple):
    """Which run: the task, the mixer's name (or a study variant's label, which names the run
    folder and the report column) and the seed."""

    task: str
    mixer: str
    seed: int

    @property
    def desc(self) -> str:
        return f"{self.task}/{self.mixer}/s{self.seed}"


def _open_logger(cfg: Any, out: Path, run: _RunId, rank: distributed.Rank) -> Any:
    """On rank 0: write ``config.yaml`` and open the MLflow run (recording its id in the run
    folder, linked to the interrupted run it resumes); a logger that drops everything
    elsewhere or with ``tracking.enabled: false``."""
    from omegaconf import OmegaConf

    from katbench import tracking

    if not rank.is_main:
        return tracking.NullLogger()
    tracking.atomic_write_text(out / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    tc = cfg.tracking
    if not tc.enabled:
        return tracking.NullLogger()
    previous = tracking.previous_run_id(out) if cfg.resume else None
    logger = tracking.MlflowLogger(tracking.tracking_uri(cfg.results_dir, tc.uri),
                                   Path(cfg.results_dir), run.task,
                                   f"{run.task}-{run.mixer}-s{run.seed}", tc.flush_every_s, out)
    if logger.run_id is not None:
        tracking.atomic_write_text(out / "mlflow_run_id", logger.run_id + "\n")
    if previous is not None:
        logger.link_resumed(previous)
    return logger


def _train_and_export(spec: Any, settings: TrainerSettings, out: Path, resume: bool,
                      log: Any, run: _RunId, rank: distributed.Rank
                      ) -> tuple[dict[str, Any], list[Path], float]:
    """:func:`fit`, then (rank 0) the task's exports and the rational coefficients; returns
    fit's result, the exported files and the wall time (every attempt of a resumed run, exports
    included)."""
    from katbench import tracking

    try:
        result = fit(spec, settings, out / "checkpoint.pt", resume=resume, log=log,
                     desc=run.desc, rank=rank)
    except TypeError as err:  # config values were checked when the task was built
        raise RuntimeError(f"training {run.desc} failed ({err}); a defect of katbench or of "
                           "the task's code, not of the config: see the traceback") from err
    started = time.perf_counter() - result.pop("wall_s")
    exported: list[Path] = []
    if rank.is_main:
        spec.model.eval()
        exported = [tracking.inside(out, p)
                    for p in (spec.export(spec.model, out) if spec.export else [])]
        rationals = export_rationals(spec.model, out / "rationals.npz")
        exported += [rationals] if rationals else []
    return result, exported, time.perf_counter() - started
