"""The one training loop of katbench, shared by every task family.

``fit`` takes a :class:`~katbench.tasks.TaskSpec` and :class:`TrainerSettings` and runs epochs
of ``spec.loss`` over ``spec.train`` with Adam/AdamW, an optional linear-warmup + cosine (per
step) or reduce-on-plateau (per epoch, on the validation metric) schedule, gradient clipping,
autocast on CUDA, evaluation of ``val``/``test`` each ``eval_every`` epochs with best-epoch
tracking, atomic checkpoints (model, optimiser, schedule, RNG states) and resume. A non-finite
loss stops the run with :class:`NonFiniteLossError`; the last checkpoint written stays the last
good one because checkpoints are only written after a finite epoch.
"""

from __future__ import annotations

import io
import math
import random
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from katbench.tasks import TaskSpec, to_device
from katbench.tracking import load_checkpoint, save_checkpoint

OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("none", "cosine", "plateau")
PROGRESS = ("auto", "bar", "log", "none")


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or Inf; the run stops and keeps its last good checkpoint."""


@dataclass(frozen=True)
class TrainerSettings:
    """Validated ``trainer:`` section of the run config (see ``katbench/conf/config.yaml``)."""

    epochs: int = 100
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    schedule: str = "none"
    warmup_epochs: int = 0
    min_lr: float = 0.0
    plateau_patience: int = 10
    plateau_factor: float = 0.5
    clip_grad_norm: float | None = None
    amp: bool = True
    device: str = "auto"
    threads: int | None = None
    eval_every: int = 1
    checkpoint_every_s: float = 60.0
    progress: str = "auto"

    @classmethod
    def from_config(cls, section: Any) -> TrainerSettings:
        """Build from a mapping, raising ``ValueError`` naming the key, the value and the fix."""
        known = {f.name for f in fields(cls)}
        values = dict(section)
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown trainer key(s) {unknown}; known: {sorted(known)}")
        s = cls(**values)
        checks = [
            (s.epochs >= 1, "trainer.epochs", "an integer >= 1"),
            (s.optimizer in OPTIMIZERS, "trainer.optimizer", f"one of {OPTIMIZERS}"),
            (s.lr > 0, "trainer.lr", "a positive number"),
            (s.weight_decay >= 0, "trainer.weight_decay", "a number >= 0"),
            (s.schedule in SCHEDULES, "trainer.schedule", f"one of {SCHEDULES}"),
            (0 <= s.warmup_epochs < s.epochs, "trainer.warmup_epochs", "in [0, epochs)"),
            (0 <= s.min_lr <= s.lr, "trainer.min_lr", "in [0, lr]"),
            (0 < s.plateau_factor < 1, "trainer.plateau_factor", "in (0, 1)"),
            (s.clip_grad_norm is None or s.clip_grad_norm > 0, "trainer.clip_grad_norm",
             "null or a positive number"),
            (s.threads is None or s.threads >= 1, "trainer.threads", "null or an integer >= 1"),
            (s.eval_every >= 1, "trainer.eval_every", "an integer >= 1"),
            (s.checkpoint_every_s >= 0, "trainer.checkpoint_every_s", "a number >= 0"),
            (s.progress in PROGRESS, "trainer.progress", f"one of {PROGRESS}"),
        ]
        for ok, key, expected in checks:
            if not ok:
                raise ValueError(f"{key}={getattr(s, key.split('.')[1])!r} is invalid; "
                                 f"set it to {expected}")
        return s

    def resolve_device(self) -> torch.device:
        """``auto`` -> CUDA when available, else CPU; an unavailable CUDA device is an error."""
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        device = torch.device(self.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"trainer.device={self.device!r} but CUDA is not available; "
                             "use trainer.device=cpu or auto")
        return device


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) so a run is repeatable on CPU."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    # Tensors and plain containers only, so checkpoints load with torch.load(weights_only=True).
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def count_samples(batch: Any) -> int:
    """Samples in a batch: graphs of a PyG batch, else the leading size of its first tensor."""
    if hasattr(batch, "num_graphs"):
        return int(batch.num_graphs)
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.dim() else 1
    if isinstance(batch, dict):
        batch = list(batch.values())
    if isinstance(batch, (tuple, list)) and batch:
        return count_samples(batch[0])
    return 1


def _lr_lambda(s: TrainerSettings, steps_per_epoch: int) -> Callable[[int], float]:
    """Per-step factor: linear warmup over ``warmup_epochs``, then cosine from lr to min_lr."""
    warmup, total = s.warmup_epochs * steps_per_epoch, s.epochs * steps_per_epoch
    floor = s.min_lr / s.lr

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def _progress_bar(s: TrainerSettings, total: int, start: int, desc: str):
    on_tty = sys.stderr.isatty()
    if s.progress == "bar" or (s.progress == "auto" and on_tty):
        from tqdm import tqdm
        return tqdm(total=total, initial=start, desc=desc, unit="epoch", leave=False)
    return None


def fit(spec: TaskSpec, s: TrainerSettings, checkpoint: Path, *,
        resume: bool = False, log: Callable[[int, dict[str, float]], None] | None = None,
        desc: str = "") -> dict[str, Any]:
    """Train ``spec.model`` for ``s.epochs`` epochs; return the run's metrics.

    Returns ``{"final": {...}, "best": {"epoch", "val_<m>", "test_<m>"}, "history_epochs",
    "train_time_s", "selected_on"}`` where ``best`` is the epoch with the best validation metric
    (test metric when the task has no validation split). ``log(epoch, metrics)`` receives each
    epoch's ``train_loss``, ``lr``, ``samples_per_s``, ``epoch_time_s`` and, on evaluated
    epochs, ``val_<metric>``/``test_<metric>``.
    """
    device = s.resolve_device()
    model = spec.model.to(device)
    decay = s.weight_decay
    opt_cls = torch.optim.AdamW if s.optimizer == "adamw" else torch.optim.Adam
    optimizer = opt_cls(model.parameters(), lr=s.lr, weight_decay=decay)
    steps_per_epoch = len(spec.train) if hasattr(spec.train, "__len__") else 1
    scheduler: Any = None
    if s.schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(s, steps_per_epoch))
    elif s.schedule == "plateau":
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max" if spec.higher_is_better else "min",
            factor=s.plateau_factor, patience=s.plateau_patience, min_lr=s.min_lr)
    use_amp = s.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    m = spec.metric
    select_key = f"val_{m}" if spec.val is not None else f"test_{m}"
    sign = 1.0 if spec.higher_is_better else -1.0
    state: dict[str, Any] = {"epoch": 0, "best": None, "final": {}, "train_time_s": 0.0}

    if resume and checkpoint.exists():
        ckpt = load_checkpoint(checkpoint, device)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        _set_rng_state(ckpt["rng"])
        state = ckpt["state"]

    def write_checkpoint() -> None:
        save_checkpoint(checkpoint, {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "scaler": scaler.state_dict(), "rng": _rng_state(), "state": state})

    def evaluate(loader: Iterable[Any]) -> float:
        model.eval()
        with torch.no_grad(), torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
            value = float(spec.evaluate(model, _on_device(loader, device)))
        model.train()
        return value

    bar = _progress_bar(s, s.epochs, state["epoch"], desc)
    log_stride = max(1, s.epochs // 10)
    last_checkpoint = time.monotonic()
    model.train()
    for epoch in range(state["epoch"] + 1, s.epochs + 1):
        start = time.perf_counter()
        total_loss, n_batches, n_samples = 0.0, 0, 0
        for step, batch in enumerate(_on_device(spec.train, device)):
            with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                loss = spec.loss(model, batch)
            value = float(loss.detach())
            if not math.isfinite(value):
                raise NonFiniteLossError(
                    f"{desc}: training loss became {value} at epoch {epoch}, step {step}; "
                    "the last good checkpoint is kept. Lower trainer.lr or set "
                    "trainer.clip_grad_norm")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if s.clip_grad_norm is not None:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), s.clip_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            if s.schedule == "cosine":
                scheduler.step()
            total_loss, n_batches = total_loss + value, n_batches + 1
            n_samples += count_samples(batch)
        elapsed = time.perf_counter() - start
        state["train_time_s"] += elapsed
        metrics = {"train_loss": total_loss / max(1, n_batches),
                   "lr": optimizer.param_groups[0]["lr"],
                   "samples_per_s": n_samples / max(elapsed, 1e-9), "epoch_time_s": elapsed}
        if epoch % s.eval_every == 0 or epoch == s.epochs:
            if spec.val is not None:
                metrics[f"val_{m}"] = evaluate(spec.val)
            metrics[f"test_{m}"] = evaluate(spec.test)
            score = metrics[select_key]
            if state["best"] is None or sign * score > sign * state["best"][select_key]:
                state["best"] = {"epoch": epoch, **{k: metrics[k] for k in metrics
                                                    if k.startswith(("val_", "test_"))}}
            if s.schedule == "plateau":
                scheduler.step(score)
        state["epoch"], state["final"] = epoch, metrics
        if log is not None:
            log(epoch, metrics)
        if bar is not None:
            bar.update(1)
            bar.set_postfix({k: f"{v:.4g}" for k, v in metrics.items() if k != "lr"})
        elif s.progress != "none" and (epoch % log_stride == 0 or epoch == s.epochs):
            shown = " ".join(f"{k}={v:.4g}" for k, v in metrics.items())
            print(f"{desc} epoch {epoch}/{s.epochs} {shown}", file=sys.stderr, flush=True)
        if time.monotonic() - last_checkpoint >= s.checkpoint_every_s:
            write_checkpoint()
            last_checkpoint = time.monotonic()
    if bar is not None:
        bar.close()
    write_checkpoint()
    return {"final": state["final"], "best": state["best"], "epochs_done": state["epoch"],
            "train_time_s": state["train_time_s"], "selected_on": select_key}


def _on_device(loader: Iterable[Any], device: torch.device) -> Iterable[Any]:
    for batch in loader:
        yield to_device(batch, device)


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
    from katbench.tracking import atomic_write_bytes

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run_experiment(cfg: Any) -> dict[str, Any]:
    """Run one configured experiment end to end and return its ``metrics.json`` content.

    Seeds, builds the task, writes ``config.yaml``, opens the MLflow run, trains with :func:`fit`,
    exports arrays/plots, writes ``metrics.json`` last (its presence means the run finished) and
    closes the MLflow run as FINISHED, or FAILED/KILLED when training raises.
    """
    from omegaconf import OmegaConf

    from katbench import tracking
    from katbench.tasks import build_task

    settings = TrainerSettings.from_config(cfg.trainer)
    device = settings.resolve_device()
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    task, mixer, seed = str(cfg.task.name), str(cfg.mixer.name), int(cfg.seed)
    out = tracking.run_dir(cfg.results_dir, task, mixer, seed)
    seed_everything(seed)
    spec = build_task(cfg)
    n_params = sum(p.numel() for p in spec.model.parameters() if p.requires_grad)
    config_text = OmegaConf.to_yaml(cfg, resolve=True)
    tracking.atomic_write_text(out / "config.yaml", config_text)
    tc = cfg.tracking
    logger: Any = tracking.NullLogger()
    if tc.enabled:
        logger = tracking.MlflowLogger(tracking.tracking_uri(cfg.results_dir, tc.uri),
                                       Path(cfg.results_dir), task, f"{task}-{mixer}-s{seed}",
                                       tc.flush_every_s)
    logger.log_params({**tracking.flatten(OmegaConf.to_container(cfg, resolve=True)),
                       "params": n_params, "git_commit": tracking.git_commit(),
                       "torch_version": torch.__version__, "device": str(device)})
    every = int(tc.log_every)
    if every < 1:
        raise ValueError(f"tracking.log_every={every} is invalid; set it to an integer >= 1")

    def log(epoch: int, values: dict[str, float]) -> None:
        if epoch % every == 0 or epoch == settings.epochs:
            logger.log_metrics(epoch, values)

    wall = time.perf_counter()
    try:
        result = fit(spec, settings, out / "checkpoint.pt", resume=bool(cfg.resume), log=log,
                     desc=f"{task}/{mixer}/s{seed}")
        spec.model.eval()
        exported = list(spec.export(spec.model, out)) if spec.export else []
        rationals = export_rationals(spec.model, out / "rationals.npz")
        exported += [rationals] if rationals else []
    except BaseException as err:
        logger.finish("KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED")
        raise
    metrics = {"task": task, "family": str(cfg.task.family), "mixer": mixer, "seed": seed,
               "metric": spec.metric,
               "higher_is_better": spec.higher_is_better, **result, "params": n_params,
               "wall_time_s": time.perf_counter() - wall,
               "peak_memory_mb": _peak_memory_mb(device), "device": str(device),
               "torch_version": torch.__version__, "mlflow_run_id": logger.run_id}
    from katbench.report import plot_run

    plots = plot_run(out)
    tracking.write_json(out / "metrics.json", metrics)
    logger.log_artifacts([out / "config.yaml", out / "metrics.json", *exported, *plots])
    logger.finish("FINISHED")
    return metrics
