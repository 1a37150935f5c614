"""The one training loop of katbench, shared by every task family.

``fit`` takes a :class:`~katbench.tasks.TaskSpec` and :class:`TrainerSettings` and runs epochs
of ``spec.loss`` over ``spec.train`` with Adam/AdamW (no weight decay on biases, norms,
position embeddings, class tokens and rational coefficients), an optional linear-warmup +
cosine (per step) or reduce-on-plateau (per epoch, on the validation metric) schedule, gradient
clipping, autocast on CUDA, an optional EMA of the weights (evaluated instead of the raw ones),
optional ``torch.compile``, data parallelism under ``torchrun`` (:mod:`katbench.distributed`),
evaluation of ``val``/``test`` each ``eval_every`` epochs with best-epoch tracking, atomic
checkpoints and resume.

Checkpoints hold model, optimiser, schedule, EMA, RNG and loader-generator states plus the
position inside the epoch, so a run stopped anywhere (SIGTERM, or SIGKILL after a periodic
checkpoint) resumes to the same numbers as an uninterrupted one: on resume the epoch's RNG and
loader states are restored, the batches already trained on are skipped, and the RNG state of
the checkpoint is put back. A stop request (:func:`request_stop`, the CLI's SIGTERM/SIGINT
handler) checkpoints after the current step and raises :class:`RunInterrupted`; a non-finite
loss raises :class:`NonFiniteLossError` before the step is applied, so the last checkpoint
written is the last good one.
"""

from __future__ import annotations

import math
import random
import signal
import sys
import time
import typing
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from katbench import distributed
from katbench.distributed import Rank
from katbench.tasks import TaskSpec, to_device
from katbench.tracking import load_checkpoint, save_checkpoint

OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("none", "cosine", "plateau")
PROGRESS = ("auto", "bar", "log", "none")
# Parameter names (dotted components) trained without weight decay, besides every ndim <= 1 one.
NO_DECAY = ("bias", "pos_embed", "cls_token", "numerator", "denominator")
CHECKPOINT_KEYS = {"model", "optimizer", "scheduler", "scaler", "rng", "state", "epoch_start"}


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or Inf; the run stops and keeps its last good checkpoint."""


class RunInterrupted(Exception):
    """A stop was requested (SIGTERM/SIGINT); a checkpoint was written, ``resume=true`` goes on."""

    def __init__(self, reason: str, epoch: int, step: int, checkpoint: Path) -> None:
        super().__init__(f"stopped by {reason} in epoch {epoch} after step {step}; checkpoint "
                         f"saved to {checkpoint}; run again with resume=true to continue")
        self.reason = reason


_STOP: dict[str, str | None] = {"reason": None}


def request_stop(signum: int, frame: Any = None) -> None:
    """Signal handler: ask the running :func:`fit` to checkpoint and stop after this step.

    A second signal while a stop is pending raises ``KeyboardInterrupt`` (stop at once)."""
    if _STOP["reason"] is not None:
        raise KeyboardInterrupt
    _STOP["reason"] = signal.Signals(signum).name


def clear_stop() -> None:
    """Forget a pending stop request (before the next run of a sweep)."""
    _STOP["reason"] = None


_KINDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _typed(key: str, value: Any, hint: Any) -> Any:
    """``value`` checked against the field's type hint (ints accepted as floats)."""
    args = typing.get_args(hint) or (hint,)
    optional = type(None) in args
    base = next(a for a in args if a is not type(None))
    if value is None and optional:
        return None
    ok = isinstance(value, base) and not (base is int and isinstance(value, bool))
    if base is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not ok:
        raise ValueError(f"trainer.{key}={value!r} has the wrong type; set it to "
                         f"{_KINDS[base]}{' or null' if optional else ''}")
    return value


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
    stop_at_min_lr: bool = False
    clip_grad_norm: float | None = None
    ema_decay: float | None = None
    compile: bool = False
    amp: bool = True
    device: str = "auto"
    threads: int | None = None
    eval_every: int = 1
    checkpoint_every_s: float = 60.0
    max_hours: float | None = None
    progress: str = "auto"
    log_every: int | None = None

    @classmethod
    def from_config(cls, section: Any) -> TrainerSettings:
        """Build from a mapping, raising ``ValueError`` naming the key, the value and the fix."""
        hints = typing.get_type_hints(cls)
        values = dict(section)
        unknown = sorted(set(values) - set(hints))
        if unknown:
            raise ValueError(f"unknown trainer key(s) {unknown}; known: {sorted(hints)}")
        s = cls(**{k: _typed(k, v, hints[k]) for k, v in values.items()})
        checks = [
            (s.epochs >= 1, "trainer.epochs", "an integer >= 1"),
            (s.optimizer in OPTIMIZERS, "trainer.optimizer", f"one of {OPTIMIZERS}"),
            (s.lr > 0, "trainer.lr", "a positive number"),
            (s.weight_decay >= 0, "trainer.weight_decay", "a number >= 0"),
            (s.schedule in SCHEDULES, "trainer.schedule", f"one of {SCHEDULES}"),
            (0 <= s.warmup_epochs < s.epochs, "trainer.warmup_epochs", "in [0, epochs)"),
            (0 <= s.min_lr <= s.lr, "trainer.min_lr", "in [0, lr]"),
            (0 < s.plateau_factor < 1, "trainer.plateau_factor", "in (0, 1)"),
            (not s.stop_at_min_lr or s.schedule == "plateau", "trainer.stop_at_min_lr",
             "false, or use trainer.schedule=plateau"),
            (s.clip_grad_norm is None or s.clip_grad_norm > 0, "trainer.clip_grad_norm",
             "null or a positive number"),
            (s.ema_decay is None or 0 < s.ema_decay < 1, "trainer.ema_decay",
             "null or in (0, 1), e.g. 0.999"),
            (s.threads is None or s.threads >= 1, "trainer.threads", "null or an integer >= 1"),
            (s.eval_every >= 1, "trainer.eval_every", "an integer >= 1"),
            (s.checkpoint_every_s >= 0, "trainer.checkpoint_every_s", "a number >= 0"),
            (s.max_hours is None or s.max_hours > 0, "trainer.max_hours",
             "null or a positive number of hours"),
            (s.progress in PROGRESS, "trainer.progress", f"one of {PROGRESS}"),
            (s.log_every is None or s.log_every >= 1, "trainer.log_every",
             "null or an integer >= 1"),
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
        try:
            device = torch.device(self.device)
        except RuntimeError as err:
            raise ValueError(f"trainer.device={self.device!r} is not a device; use auto, cpu, "
                             "cuda or cuda:<k>") from err
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


def _loader_parts(loader: Any) -> list[Any]:
    """The loader and the loaders it wraps (``.loader``), outermost first."""
    parts = [loader]
    while hasattr(parts[-1], "loader") and len(parts) < 4:
        parts.append(parts[-1].loader)
    return parts


def _loader_state(loader: Any) -> list[dict[str, Any]]:
    """Generator states and epoch counters of a loader and the loaders it wraps: loaders that
    shuffle with their own ``torch.Generator`` (tabular, vision) resume in the same order."""
    out = []
    for part in _loader_parts(loader):
        gen = getattr(part, "generator", None)
        out.append({"generator": gen.get_state() if isinstance(gen, torch.Generator) else None,
                    "epoch": getattr(part, "epoch", None)})
    return out


def _set_loader_state(loader: Any, states: list[dict[str, Any]]) -> None:
    for part, st in zip(_loader_parts(loader), states, strict=False):
        if st["generator"] is not None:
            part.generator.set_state(st["generator"])
        if isinstance(st["epoch"], int):
            part.epoch = st["epoch"]


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


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two optimiser groups: ``weight_decay`` for weight matrices, 0 for parameters with
    ``ndim <= 1`` (biases, norm scales) or a name component in :data:`NO_DECAY` or starting with
    ``norm`` (position embeddings, class tokens, rational coefficients)."""
    decay, exempt = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        parts = name.split(".")
        free = p.ndim <= 1 or any(c in NO_DECAY or c.startswith("norm") for c in parts)
        (exempt if free else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": exempt, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


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


def _restore(ckpt: dict[str, Any], path: Path, objects: dict[str, Any]) -> None:
    """Load each ``objects[key].load_state_dict(ckpt[key])``; a mismatch is a ``ValueError``."""
    missing = sorted(CHECKPOINT_KEYS - set(ckpt)) if isinstance(ckpt, dict) else ["model"]
    if missing:
        raise ValueError(f"{path} is not a katbench checkpoint (no {missing[0]!r}); delete it "
                         "or run without resume=true")
    for key, obj in objects.items():
        if obj is None:
            continue
        try:
            obj.load_state_dict(ckpt[key])
        except (RuntimeError, ValueError, KeyError, TypeError) as err:
            lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
            first = " ".join(lines[:2]) if lines else type(err).__name__
            raise ValueError(f"checkpoint {path} does not fit this run's {key} ({first[:200]}); "
                             "it comes from another task, mixer or setting: delete it or run "
                             "without resume=true") from err


def fit(spec: TaskSpec, s: TrainerSettings, checkpoint: Path, *,
        resume: bool = False, log: Callable[[int, dict[str, float]], None] | None = None,
        desc: str = "", rank: Rank | None = None) -> dict[str, Any]:
    """Train ``spec.model`` for ``s.epochs`` epochs; return the run's metrics.

    Returns ``{"final": {...}, "best": {"epoch", "val_<m>", "test_<m>"}, "epochs_done",
    "train_time_s", "wall_s", "selected_on", "stopped_early"}`` (times summed over every attempt
    of a resumed run; ``wall_s`` includes evaluation) where ``best`` is the epoch with the best
    validation metric (test metric when the task has no validation split) and
    ``stopped_early`` is ``None``, ``"min_lr"`` or ``"max_hours"``. ``log(epoch, metrics)``
    receives each epoch's ``train_loss``, ``lr``, ``samples_per_s``, ``epoch_time_s`` and, on
    evaluated epochs, ``val_<metric>``/``test_<metric>`` (all averaged over ranks). Only rank 0
    writes the checkpoint; every rank reads it on resume.
    """
    rank = rank or Rank()
    device = s.resolve_device()
    raw = spec.model.to(device)
    optimizer_cls = torch.optim.AdamW if s.optimizer == "adamw" else torch.optim.Adam
    optimizer = optimizer_cls(param_groups(raw, s.weight_decay), lr=s.lr)
    model: Any = raw
    if rank.world > 1:
        # Unused parameters are common here (e.g. categorical embeddings of a table without
        # categorical columns); finding them costs one graph walk per step.
        model = torch.nn.parallel.DistributedDataParallel(
            raw, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=True)
    if s.compile:
        model = torch.compile(model)
    ema = None
    if s.ema_decay is not None:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(raw, multi_avg_fn=get_ema_multi_avg_fn(s.ema_decay),
                            use_buffers=True)
    eval_model = ema.module if ema is not None else raw
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
    shard = rank.world > 1 and not distributed.is_sharded(spec.train)
    state: dict[str, Any] = {"epoch": 0, "step": 0, "best": None, "final": {},
                             "train_time_s": 0.0, "wall_s": 0.0, "stopped_early": None,
                             "partial": {"loss": 0.0, "batches": 0, "samples": 0, "time": 0.0}}
    epoch_start: dict[str, Any] = {}
    resumed_rng = None
    if resume and checkpoint.exists():
        ckpt = load_checkpoint(checkpoint, device)
        _restore(ckpt, checkpoint, {"model": raw, "optimizer": optimizer, "scheduler": scheduler,
                                    "scaler": scaler, "ema": ema})
        state, epoch_start, resumed_rng = ckpt["state"], ckpt["epoch_start"], ckpt["rng"]
        _set_rng_state(resumed_rng)

    def write_checkpoint() -> None:
        if not rank.is_main:
            return
        save_checkpoint(checkpoint, {
            "model": raw.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "scaler": scaler.state_dict(), "ema": ema.state_dict() if ema is not None else None,
            "rng": _rng_state(), "state": state, "epoch_start": epoch_start})

    def evaluate(loader: Iterable[Any]) -> float:
        eval_model.eval()
        with torch.no_grad(), torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
            value = float(spec.evaluate(eval_model, _on_device(loader, device)))
        raw.train()
        return value

    def batches(epoch: int) -> Iterator[Any]:
        """The epoch's batches from the current step on (earlier ones skipped on resume)."""
        nonlocal epoch_start
        skip = state["step"]
        if skip:
            _set_rng_state(epoch_start["rng"])
            _set_loader_state(spec.train, epoch_start["loader"])
        else:
            epoch_start = {"rng": _rng_state(), "loader": _loader_state(spec.train)}
        iterator = iter(spec.train)
        for _ in range(skip):
            next(iterator)
        if skip:
            _set_rng_state(resumed_rng)
        for batch in iterator:
            if not shard:
                yield to_device(batch, device), 1.0
                continue
            # Weighting each rank's mean loss by its share of the batch makes the DDP-averaged
            # gradient the one-process gradient even when the batch does not split evenly.
            local = distributed.shard_batch(batch, rank)
            yield to_device(local, device), (
                count_samples(local) * rank.world / max(1, count_samples(batch)))

    bar = _progress_bar(s, s.epochs, state["epoch"], desc) if rank.is_main else None
    log_stride = s.log_every or max(1, s.epochs // 10)
    last_checkpoint = time.monotonic()
    raw.train()
    for epoch in range(state["epoch"] + 1, s.epochs + 1):
        start = time.perf_counter()
        part = state["partial"]
        for batch, weight in batches(epoch):
            with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                loss = spec.loss(model, batch) * weight
            value = float(loss.detach())
            bad, stop = distributed.any_rank([not math.isfinite(value),
                                              _STOP["reason"] is not None], rank)
            if bad:
                raise NonFiniteLossError(
                    f"{desc}: training loss became {value} at epoch {epoch}, step "
                    f"{state['step']}; the last good checkpoint is kept. Lower trainer.lr or "
                    "set trainer.clip_grad_norm")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if s.clip_grad_norm is not None:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(raw.parameters(), s.clip_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            if ema is not None:
                ema.update_parameters(raw)
            if s.schedule == "cosine":
                scheduler.step()
            state["step"] += 1
            part["loss"], part["batches"] = part["loss"] + value, part["batches"] + 1
            part["samples"] += count_samples(batch)
            now = time.perf_counter()
            part["time"], start = part["time"] + now - start, now
            if stop:
                write_checkpoint()
                raise RunInterrupted(_STOP["reason"] or "a stop on another rank", epoch,
                                     state["step"], checkpoint)
            if time.monotonic() - last_checkpoint >= s.checkpoint_every_s:
                write_checkpoint()
                last_checkpoint = time.monotonic()
        elapsed = part["time"] + time.perf_counter() - start
        reduced = distributed.mean_over_ranks(
            {"train_loss": part["loss"] / max(1, part["batches"]), "samples": part["samples"]},
            rank)
        metrics = {"train_loss": reduced["train_loss"],
                   "lr": optimizer.param_groups[0]["lr"],
                   "samples_per_s": reduced["samples"] * rank.world / max(elapsed, 1e-9),
                   "epoch_time_s": elapsed}
        state["train_time_s"] += elapsed
        (time_up,) = distributed.any_rank(
            [s.max_hours is not None and state["wall_s"] + elapsed >= s.max_hours * 3600], rank)
        if epoch % s.eval_every == 0 or epoch == s.epochs or time_up:
            scores = {f"val_{m}": evaluate(spec.val)} if spec.val is not None else {}
            scores[f"test_{m}"] = evaluate(spec.test)
            metrics.update(distributed.mean_over_ranks(scores, rank))
            score = metrics[select_key]
            if state["best"] is None or sign * score > sign * state["best"][select_key]:
                state["best"] = {"epoch": epoch, **{k: metrics[k] for k in metrics
                                                    if k.startswith(("val_", "test_"))}}
            if s.schedule == "plateau":
                scheduler.step(score)
        state["epoch"], state["final"], state["step"] = epoch, metrics, 0
        state["partial"] = {"loss": 0.0, "batches": 0, "samples": 0, "time": 0.0}
        state["wall_s"] += time.perf_counter() - start + part["time"]
        if time_up:
            state["stopped_early"] = "max_hours"
        elif s.stop_at_min_lr and optimizer.param_groups[0]["lr"] <= s.min_lr * (1 + 1e-9):
            state["stopped_early"] = "min_lr"
        if log is not None and rank.is_main:
            log(epoch, metrics)
        if bar is not None:
            bar.update(1)
            bar.set_postfix({k: f"{v:.4g}" for k, v in metrics.items() if k != "lr"})
        elif rank.is_main and s.progress != "none" and (
                epoch % log_stride == 0 or epoch == s.epochs or state["stopped_early"]):
            shown = " ".join(f"{k}={v:.4g}" for k, v in metrics.items())
            print(f"{desc} epoch {epoch}/{s.epochs} {shown}", file=sys.stderr, flush=True)
        if time.monotonic() - last_checkpoint >= s.checkpoint_every_s:
            write_checkpoint()
            last_checkpoint = time.monotonic()
        if state["stopped_early"]:
            if rank.is_main:
                print(f"{desc}: stopped after epoch {epoch}: "
                      + ("trainer.max_hours reached" if time_up else "lr reached min_lr"),
                      file=sys.stderr, flush=True)
            break
    if bar is not None:
        bar.close()
    write_checkpoint()
    if ema is not None:
        raw.load_state_dict(ema.module.state_dict())   # exports show the evaluated weights
    return {"final": state["final"], "best": state["best"], "epochs_done": state["epoch"],
            "train_time_s": state["train_time_s"], "wall_s": state["wall_s"],
            "selected_on": select_key,
            "stopped_early": state["stopped_early"]}


def _on_device(loader: Iterable[Any], device: torch.device) -> Iterable[Any]:
    for batch in loader:
        yield to_device(batch, device)
