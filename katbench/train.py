"""The one training loop of katbench, shared by every task family.

``fit`` takes a :class:`~katbench.tasks.TaskSpec` and :class:`TrainerSettings` and runs epochs
of ``spec.loss`` over ``spec.train`` with Adam/AdamW (no weight decay on biases, norms,
position embeddings, class tokens and rational coefficients), an optional linear-warmup +
cosine (per step) or reduce-on-plateau (per epoch, on the validation metric or loss) schedule,
gradient clipping, autocast on CUDA, an optional EMA of the weights (evaluated instead of the raw
ones), optional ``torch.compile``, data parallelism under ``torchrun``
(:mod:`katbench.distributed`), evaluation of ``val``/``test`` each ``eval_every`` epochs with
best-epoch tracking, atomic checkpoints and resume.

Checkpoints hold model, optimiser, schedule, EMA, RNG and loader-generator states plus the
position inside the epoch, so a run stopped anywhere (SIGTERM, or SIGKILL after a periodic
checkpoint) resumes to the same numbers as an uninterrupted one: on resume the epoch's RNG and
loader states are restored, the batches already trained on are skipped, and the RNG state of
the checkpoint is put back. A stop request (:func:`request_stop`, the CLI's SIGTERM/SIGINT
handler) checkpoints after the current step and raises :class:`RunInterrupted`; a non-finite
loss raises :class:`NonFiniteLossError`, and no checkpoint is ever written over weights whose
losses were not all found finite, so the last checkpoint written is the last good one.
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
PLATEAU_SIGNALS = ("metric", "loss")
PROGRESS = ("auto", "bar", "log", "none")
# torch.compile's modes; "reduce-overhead" replays CUDA graphs (static shapes: e.g. the padded
# graph batches of task.pad_nodes)
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# torch.set_float32_matmul_precision: float32 matmuls in full precision, or on TF32 tensor cores
MATMUL_PRECISIONS = ("highest", "high", "medium")
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
    plateau_on: str = "metric"
    stop_at_min_lr: bool = False
    clip_grad_norm: float | None = None
    ema_decay: float | None = None
    compile: bool = False
    compile_mode: str = "default"
    amp: bool = True
    matmul_precision: str = "highest"
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
            (s.plateau_on in PLATEAU_SIGNALS, "trainer.plateau_on", f"one of {PLATEAU_SIGNALS}"),
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
            (s.compile_mode in COMPILE_MODES, "trainer.compile_mode", f"one of {COMPILE_MODES}"),
            (s.matmul_precision in MATMUL_PRECISIONS, "trainer.matmul_precision",
             f"one of {MATMUL_PRECISIONS}"),
            (s.log_every is None or s.log_every >= 1, "trainer.log_every",
             "null or an integer >= 1"),
        ]
        for ok, key, expected in checks:
            if not ok:
                raise ValueError(f"{key}={getattr(s, key.split('.')[1])!r} is invalid; "
                                 f"set it to {expected}")
        return s

    def autocast_dtype(self, device: torch.device) -> torch.dtype | None:
        """The dtype ``trainer.amp`` autocasts to on ``device`` (bf16 where the GPU has it, else
        fp16), or None: no autocast (``amp: false``, or not CUDA)."""
        if not (self.amp and device.type == "cuda"):
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16

    def numerics(self, device: torch.device) -> torch.autocast:
        """Apply ``trainer.matmul_precision`` (process-wide) and return the autocast context of
        a forward pass on ``device`` (disabled without ``amp``)."""
        torch.set_float32_matmul_precision(self.matmul_precision)
        dtype = self.autocast_dtype(device)
        return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)

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
    training = Training(spec, s, checkpoint, rank or Rank(), desc)
    if resume and checkpoint.exists():
        training.restore()
    return training.run(log)


class Training:
    """One run of :func:`fit`: the model, optimiser, schedule and the run's progress ``state``,
    with one method per step of the loop (``run`` -> ``train_epoch`` -> ``train_step``, then
    ``evaluate_epoch`` and ``end_epoch``).

    The loss of a step is read on the host one step late (:meth:`check_loss`), so the host
    queues step ``k`` while the GPU finishes step ``k - 1`` instead of waiting for it; every
    checkpoint is written only after all losses of the steps it contains were found finite.
    """

    def __init__(self, spec: TaskSpec, s: TrainerSettings, checkpoint: Path, rank: Rank,
                 desc: str) -> None:
        self.spec, self.s, self.checkpoint, self.rank, self.desc = spec, s, checkpoint, rank, desc
        self.device = device = s.resolve_device()
        self.raw = spec.model.to(device)
        for loader in (spec.train, spec.val, spec.test):
            if callable(getattr(loader, "to", None)):    # loaders that hold data on the device
                loader.to(device)
        optimizer_cls = torch.optim.AdamW if s.optimizer == "adamw" else torch.optim.Adam
        self.optimizer = optimizer_cls(param_groups(self.raw, s.weight_decay), lr=s.lr)
        self.model: Any = self.raw
        if rank.world > 1:
            # Unused parameters are common here (e.g. categorical embeddings of a table without
            # categorical columns); finding them costs one graph walk per step.
            self.model = torch.nn.parallel.DistributedDataParallel(
                self.raw, device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=True)
            if callable(getattr(spec.train, "shard", None)):
                spec.train.shard(rank.rank, rank.world)
        if s.compile:
            self.model = torch.compile(self.model, mode=s.compile_mode)
        self.ema = None
        if s.ema_decay is not None:
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            self.ema = AveragedModel(self.raw, multi_avg_fn=get_ema_multi_avg_fn(s.ema_decay),
                                     use_buffers=True)
        self.eval_model = self.ema.module if self.ema is not None else self.raw
        # Evaluation compiles too: eager, a host-bound model's val/test passes can cost more
        # than its (compiled) training epoch.
        self.eval_forward = (torch.compile(self.eval_model, mode=s.compile_mode) if s.compile
                             else self.eval_model)
        self.scheduler = self._scheduler()
        self.autocast = s.numerics(device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=s.autocast_dtype(device)
                                           == torch.float16)
        self.select_key = f"val_{spec.metric}" if spec.val is not None else f"test_{spec.metric}"
        self.sign = 1.0 if spec.higher_is_better else -1.0
        self.shard = rank.world > 1 and not distributed.is_sharded(spec.train)
        self.state: dict[str, Any] = {
            "epoch": 0, "step": 0, "best": None, "final": {}, "train_time_s": 0.0,
            "wall_s": 0.0, "stopped_early": None,
            "partial": {"loss": 0.0, "batches": 0, "samples": 0, "time": 0.0}}
        self.epoch_start: dict[str, Any] = {}
        self.resumed_rng: dict[str, Any] | None = None
        self.pending: tuple[torch.Tensor, int, int] | None = None  # loss not yet read, where
        self.last_checkpoint = time.monotonic()

    def _scheduler(self) -> Any:
        s, spec = self.s, self.spec
        if s.schedule == "cosine":
            steps_per_epoch = len(spec.train) if hasattr(spec.train, "__len__") else 1
            return torch.optim.lr_scheduler.LambdaLR(self.optimizer,
                                                     _lr_lambda(s, steps_per_epoch))
        if s.schedule == "plateau":
            if s.plateau_on == "loss" and spec.val is None:
                raise ValueError("trainer.plateau_on=loss watches the validation loss, but this "
                                 "task has no validation split; use trainer.plateau_on=metric")
            return torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.optimizer,
                mode="max" if spec.higher_is_better and s.plateau_on == "metric" else "min",
                factor=s.plateau_factor, patience=s.plateau_patience, min_lr=s.min_lr)
        return None

    def restore(self) -> None:
        """Continue from ``checkpoint``: weights, optimiser, schedule, RNG and progress."""
        ckpt = load_checkpoint(self.checkpoint)
        _restore(ckpt, self.checkpoint, {
            "model": self.raw, "optimizer": self.optimizer, "scheduler": self.scheduler,
            "scaler": self.scaler, "ema": self.ema})
        self.state, self.epoch_start, self.resumed_rng = (ckpt["state"], ckpt["epoch_start"],
                                                          ckpt["rng"])
        _set_rng_state(self.resumed_rng)
        if "loader" in ckpt:   # a checkpoint at an epoch boundary continues this shuffle order
            _set_loader_state(self.spec.train, ckpt["loader"])

    def write_checkpoint(self) -> None:
        """Save everything a resume needs (rank 0), once every queued loss is known finite."""
        self.check_loss()
        if self.rank.is_main:
            save_checkpoint(self.checkpoint, {
                "model": self.raw.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                "scaler": self.scaler.state_dict(),
                "ema": self.ema.state_dict() if self.ema is not None else None,
                "rng": _rng_state(), "loader": _loader_state(self.spec.train),
                "state": self.state, "epoch_start": self.epoch_start})
        self.last_checkpoint = time.monotonic()

    def check_loss(self, stop: bool = False) -> bool:
        """Read the queued loss (adding it to the epoch's sum) and agree over ranks whether it is
        finite and whether a stop was requested (``stop``); return whether to stop."""
        bad, value, epoch, step = False, math.nan, self.state["epoch"] + 1, self.state["step"]
        if self.pending is not None:
            loss, epoch, step = self.pending
            self.pending = None
            value = float(loss)
            bad = not math.isfinite(value)
            self.state["partial"]["loss"] += value
        bad, stop = distributed.any_rank([bad, stop], self.rank)
        if bad:
            raise NonFiniteLossError(
                f"{self.desc}: training loss became {value} at epoch {epoch}, step {step}; the "
                "last good checkpoint is kept. Lower trainer.lr or set trainer.clip_grad_norm")
        return stop

    def evaluate(self, loader: Iterable[Any]) -> float:
        """``spec.evaluate`` of the evaluated weights over ``loader``, without gradients."""
        return self._measure(lambda batches: self.spec.evaluate(self.eval_forward, batches),
                             loader)

    def evaluate_with_loss(self, loader: Iterable[Any]) -> tuple[float, float]:
        """``spec.evaluate`` and the mean over ``loader``'s batches of ``spec.loss`` (the graph
        benchmark's plateau signal, ``trainer.plateau_on=loss``) in one pass: each batch's
        output is computed once, for the metric, and ``spec.loss`` reads it back."""
        current: list[Any] = [None]   # the batch spec.evaluate is at
        losses: list[torch.Tensor] = []

        def tracked(batches: Iterable[Any]) -> Iterator[Any]:
            for batch in batches:
                current[0] = batch
                yield batch

        def forward_and_loss(inputs: Any) -> Any:
            out = self.eval_forward(inputs)
            losses.append(self.spec.loss(_Replay(inputs, out), current[0]).float())
            return out

        metric = self._measure(
            lambda batches: self.spec.evaluate(forward_and_loss, tracked(batches)), loader)
        return metric, float(torch.stack(losses).mean()) if losses else math.nan

    def _measure(self, measure: Callable[[Iterable[Any]], Any], loader: Iterable[Any]) -> float:
        """``measure(batches on the device)`` as a float, in eval mode under ``no_grad``."""
        self.eval_model.eval()
        with torch.no_grad(), self.autocast:
            value = float(measure(_on_device(loader, self.device)))
        self.raw.train()
        return value

    def batches(self) -> Iterator[tuple[Any, float]]:
        """The epoch's batches from the current step on (earlier ones skipped on resume), each
        with its loss weight (1, or this rank's share when the trainer shards the batch)."""
        train, skip = self.spec.train, self.state["step"]
        if skip:
            _set_rng_state(self.epoch_start["rng"])
            _set_loader_state(train, self.epoch_start["loader"])
        else:
            self.epoch_start = {"rng": _rng_state(), "loader": _loader_state(train)}
        iterator = iter(train)
        for _ in range(skip):
            next(iterator)
        if skip:
            _set_rng_state(self.resumed_rng)
        for batch in iterator:
            if not self.shard:
                yield to_device(batch, self.device), 1.0
                continue
            # Weighting each rank's mean loss by its share of the batch makes the DDP-averaged
            # gradient the one-process gradient even when the batch does not split evenly.
            local = distributed.shard_batch(batch, self.rank)
            yield to_device(local, self.device), (
                count_samples(local) * self.rank.world / max(1, count_samples(batch)))

    def train_step(self, batch: Any, weight: float) -> torch.Tensor:
        """Forward, backward and update on one batch; the (unread) loss."""
        with self.autocast:
            loss = self.spec.loss(self.model, batch) * weight
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.s.clip_grad_norm is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.raw.parameters(), self.s.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update_parameters(self.raw)
        if self.s.schedule == "cosine":
            self.scheduler.step()
        return loss.detach()

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """Train one epoch (or its rest, on resume); its loss, rate and time."""
        state, part = self.state, self.state["partial"]
        start = time.perf_counter()
        for batch, weight in self.batches():
            loss = self.train_step(batch, weight)
            stop = self.check_loss(stop=_STOP["reason"] is not None)
            self.pending = (loss, epoch, state["step"])
            state["step"] += 1
            part["batches"] += 1
            part["samples"] += count_samples(batch)
            now = time.perf_counter()
            part["time"], start = part["time"] + now - start, now
            if stop:
                self.write_checkpoint()
                raise RunInterrupted(_STOP["reason"] or "a stop on another rank", epoch,
                                     state["step"], self.checkpoint)
            if time.monotonic() - self.last_checkpoint >= self.s.checkpoint_every_s:
                self.write_checkpoint()
        self.check_loss()
        elapsed = part["time"] + time.perf_counter() - start
        reduced = distributed.mean_over_ranks(
            {"train_loss": part["loss"] / max(1, part["batches"]), "samples": part["samples"]},
            self.rank)
        state["train_time_s"] += elapsed
        return {"train_loss": reduced["train_loss"], "lr": self.optimizer.param_groups[0]["lr"],
                "samples_per_s": reduced["samples"] * self.rank.world / max(elapsed, 1e-9),
                "epoch_time_s": elapsed}

    def evaluate_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        """Add the val/test metrics to ``metrics``, track the best epoch, step the plateau
        schedule."""
        m = self.spec.metric
        on_loss = self.s.schedule == "plateau" and self.s.plateau_on == "loss"
        scores = {}
        if on_loss:
            scores[f"val_{m}"], scores["val_loss"] = self.evaluate_with_loss(self.spec.val)
        elif self.spec.val is not None:
            scores[f"val_{m}"] = self.evaluate(self.spec.val)
        scores[f"test_{m}"] = self.evaluate(self.spec.test)
        metrics.update(distributed.mean_over_ranks(scores, self.rank))
        score, best = metrics[self.select_key], self.state["best"]
        if best is None or self.sign * score > self.sign * best[self.select_key]:
            self.state["best"] = {"epoch": epoch, **{k: metrics[k] for k in metrics
                                                     if k.startswith(("val_", "test_"))}}
        if self.s.schedule == "plateau":
            self.scheduler.step(metrics["val_loss"] if on_loss else score)

    def end_epoch(self, epoch: int, metrics: dict[str, float], began: float,
                  time_up: bool) -> None:
        """Record the finished epoch in ``state`` and decide whether the run stops early."""
        state = self.state
        state["wall_s"] += time.perf_counter() - began
        state["epoch"], state["final"], state["step"] = epoch, metrics, 0
        state["partial"] = {"loss": 0.0, "batches": 0, "samples": 0, "time": 0.0}
        if time_up:
            state["stopped_early"] = "max_hours"
        elif self.s.stop_at_min_lr and (self.optimizer.param_groups[0]["lr"]
                                        <= self.s.min_lr * (1 + 1e-9)):
            state["stopped_early"] = "min_lr"

    def report(self, epoch: int, metrics: dict[str, float], bar: Any, log_stride: int) -> None:
        """Progress bar or log line of an epoch (rank 0)."""
        s, stopped = self.s, self.state["stopped_early"]
        if bar is not None:
            bar.update(1)
            bar.set_postfix({k: f"{v:.4g}" for k, v in metrics.items() if k != "lr"})
        elif self.rank.is_main and s.progress != "none" and (
                epoch % log_stride == 0 or epoch == s.epochs or stopped):
            shown = " ".join(f"{k}={v:.4g}" for k, v in metrics.items())
            print(f"{self.desc} epoch {epoch}/{s.epochs} {shown}", file=sys.stderr, flush=True)
        if stopped and self.rank.is_main:
            print(f"{self.desc}: stopped after epoch {epoch}: " + (
                "trainer.max_hours reached" if stopped == "max_hours" else "lr reached min_lr"),
                file=sys.stderr, flush=True)

    def run(self, log: Callable[[int, dict[str, float]], None] | None) -> dict[str, Any]:
        """Epochs from the current one to ``s.epochs`` or an early stop; the run's metrics."""
        s, state = self.s, self.state
        bar = _progress_bar(s, s.epochs, state["epoch"], self.desc) if self.rank.is_main else None
        log_stride = s.log_every or max(1, s.epochs // 10)
        self.last_checkpoint = time.monotonic()
        self.raw.train()
        for epoch in range(state["epoch"] + 1, s.epochs + 1):
            began = time.perf_counter() - state["partial"]["time"]
            metrics = self.train_epoch(epoch)
            (time_up,) = distributed.any_rank([s.max_hours is not None and state["wall_s"]
                                               + metrics["epoch_time_s"] >= s.max_hours * 3600],
                                              self.rank)
            if epoch % s.eval_every == 0 or epoch == s.epochs or time_up:
                self.evaluate_epoch(epoch, metrics)
            self.end_epoch(epoch, metrics, began, time_up)
            if log is not None and self.rank.is_main:
                log(epoch, metrics)
            self.report(epoch, metrics, bar, log_stride)
            if time.monotonic() - self.last_checkpoint >= s.checkpoint_every_s:
                self.write_checkpoint()
            if state["stopped_early"]:
                break
        if bar is not None:
            bar.close()
        self.write_checkpoint()
        if self.ema is not None:   # exports show the evaluated weights
            self.raw.load_state_dict(self.ema.module.state_dict())
        return {"final": state["final"], "best": state["best"], "epochs_done": state["epoch"],
                "train_time_s": state["train_time_s"], "wall_s": state["wall_s"],
                "selected_on": self.select_key, "stopped_early": state["stopped_early"]}


class _Replay:
    """Stands in for the model inside ``spec.loss`` during evaluation: returns the output the
    model already gave for ``inputs``, so the loss costs no second forward pass."""

    def __init__(self, inputs: Any, output: Any) -> None:
        self.inputs, self.output = inputs, output

    def __call__(self, inputs: Any) -> Any:
        if inputs is not self.inputs:
            raise RuntimeError("this task's loss calls the model on inputs other than its batch, "
                               "so the validation loss cannot reuse the metric's forward pass; "
                               "use trainer.plateau_on=metric")
        return self.output


def _on_device(loader: Iterable[Any], device: torch.device) -> Iterable[Any]:
    for batch in loader:
        yield to_device(batch, device)
