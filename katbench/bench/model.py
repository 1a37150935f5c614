"""``python -m katbench.bench model``: training and inference images/s of timm models.

THROUGHPUT ONLY: inputs are random ``(B, 3, H, W)`` tensors and random labels, so the numbers
say how fast a model runs on a device, nothing about accuracy. A training step is forward,
cross-entropy, backward and an AdamW step (bf16 autocast on CUDA); an inference step is a
forward under ``torch.inference_mode``. Each measurement runs ``warmup`` untimed steps (kernel
builds, cuDNN/compile autotuning), then times ``steps`` steps with device synchronisation
(:func:`katbench.bench.timing.time_steps`). Models are measured in interleaved rounds in one
process and compared as ratios (``python -m katbench.bench model vit_tiny_patch16_224
kat_tiny_patch16_224``): by default eager and ``torch.compile`` at batch 128 and 256, five
rounds, each model's median images/s and the median and range of its per-round ratio to the
first model.

Small models at batch 128 are bound by the host's time to issue kernels in eager mode, so the
ratio then compares Python and launch overhead. ``--modes cuda-graph`` captures the whole step
(forward, backward and a capturable AdamW) in one CUDA graph and replays it: what remains is the
GPU's time, as in a training loop that is not bound by its host.

A model name with a backend suffix, ``kat_tiny_patch16_224[triton]`` (or ``[reference]``), runs
that model with the GR-KAN op served by that backend (:func:`katbench.ops.use_backend`): beside
the compiled kernels, the figures of a GPU without a CUDA toolkit (Triton kernels under the C++
autograd of a CPU-only build), in the same process and rounds.
"""

from __future__ import annotations

import contextlib
import re
import statistics
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from katbench.bench.timing import time_steps
from katbench.ops import PYTHON_BACKENDS, use_backend

__all__ = ["MODES", "format_table", "measure_throughput", "split_backend", "throughput_rows",
           "throughput_table"]

# how a step runs: (torch.compile, one captured CUDA graph)
MODES = {"eager": (False, False), "compile": (True, False), "cuda-graph": (False, True)}


def measure_throughput(model: torch.nn.Module, *, train: bool, batch_size: int = 128,
                       img_size: int = 224, steps: int = 20, warmup: int = 5,
                       device: str | torch.device = "cuda", amp: bool = True,
                       compile: bool = False, cuda_graph: bool = False,
                       backend: str | None = None) -> dict[str, Any]:
    """Images per second of ``model`` for training or inference steps on random tensors.

    Returns ``{"images_per_s", "step_ms", "peak_memory_mb", "batch_size", "img_size",
    "mode", "device", "amp", "compile", "cuda_graph"}``; ``peak_memory_mb`` is CUDA's allocator
    peak (None on CPU). ``amp`` is bf16 autocast and applies on CUDA only. ``cuda_graph``
    (CUDA only) times replays of one captured step instead of eager steps. ``backend``
    (``"triton"`` or ``"reference"``) serves the GR-KAN op on ``device`` throughout.
    """
    device = torch.device(device)
    with use_backend(backend, device.type) if backend else contextlib.nullcontext():
        return _measure(model, train, batch_size, img_size, steps, warmup, device, amp, compile,
                        cuda_graph)


def _measure(model: torch.nn.Module, train: bool, batch_size: int, img_size: int, steps: int,
             warmup: int, device: torch.device, amp: bool, compile: bool,
             cuda_graph: bool) -> dict[str, Any]:
    """:func:`measure_throughput` with the op's backend in place."""
    if cuda_graph and (device.type != "cuda" or compile):
        raise ValueError("cuda_graph needs a CUDA device and no compile (torch.compile's "
                         "mode='reduce-overhead' captures graphs itself)")
    model = model.to(device)
    model.train(train)
    step_model = torch.compile(model) if compile else model
    num_classes = int(getattr(model, "num_classes", 1000)) or 1000
    in_chans = int(model.patch_embed.proj.in_channels) if hasattr(model, "patch_embed") else 3
    x = torch.randn(batch_size, in_chans, img_size, img_size, device=device)
    y = torch.randint(0, num_classes, (batch_size,), device=device)
    optimizer = (torch.optim.AdamW(model.parameters(), lr=1e-4, capturable=cuda_graph)
                 if train else None)
    use_amp = amp and device.type == "cuda"

    def step() -> None:
        # A graph replays its kernels: autocast's cache of cast weights must stay out of it.
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp,
                            cache_enabled=not cuda_graph):
            if not train:
                with torch.inference_mode():
                    step_model(x)
                return
            loss = F.cross_entropy(step_model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    if cuda_graph:
        step = _captured(step, warmup)
    time_steps(step, warmup, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    elapsed = time_steps(step, steps, device)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {"images_per_s": steps * batch_size / elapsed, "step_ms": 1e3 * elapsed / steps,
            "peak_memory_mb": peak, "batch_size": batch_size, "img_size": img_size,
            "mode": "train" if train else "inference", "device": str(device),
            "amp": use_amp, "compile": compile, "cuda_graph": cuda_graph}


def _captured(step: Callable[[], None], warmup: int) -> Callable[[], None]:
    """``step`` captured in a CUDA graph after ``warmup`` eager runs on a side stream (as
    PyTorch's whole-network capture recipe does); returns the graph's replay."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(max(warmup, 1)):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    return graph.replay


def throughput_rows(models: dict[str, torch.nn.Module], rounds: int = 5,
                    modes: Sequence[str] = ("eager", "compile"),
                    batch_sizes: Sequence[int] = (128, 256),
                    backends: dict[str, str] | None = None, **kwargs: Any
                    ) -> list[dict[str, Any]]:
    """One row per model, mode (``MODES``), batch size and phase (train, inference);
    ``backends`` maps a model's name to the op backend it runs on (default: the loaded one).

    Each setting is measured in ``rounds`` interleaved rounds (A, B, A, B, ...), so a drift of
    the host or the GPU clock hits every model alike. A row keeps the median round's
    measurement (the lower middle one for an even count), ``images_per_s_rounds``, and its
    ratio to the first model: ``ratio`` the median of the per-round ratios, ``ratio_min`` and
    ``ratio_max`` their range. ``kwargs`` go to :func:`measure_throughput`.
    """
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        raise ValueError(f"unknown mode(s) {unknown}; choose from {sorted(MODES)}")
    rows = []
    for mode in modes:
        compile_, cuda_graph = MODES[mode]
        for batch_size in batch_sizes:
            runs: dict[tuple[str, bool], list[dict[str, Any]]] = {}
            for _ in range(rounds):
                for name, model in models.items():
                    for train in (True, False):
                        runs.setdefault((name, train), []).append(measure_throughput(
                            model, train=train, batch_size=batch_size, compile=compile_,
                            cuda_graph=cuda_graph, backend=(backends or {}).get(name),
                            **kwargs))
            rows += _summarise(runs, mode, next(iter(models)))
    return rows


def _summarise(runs: dict[tuple[str, bool], list[dict[str, Any]]], mode: str,
               first: str) -> list[dict[str, Any]]:
    """Rows of one setting: median round and per-round ratios to the model ``first``."""
    rows = []
    for (name, train), measured in runs.items():
        speeds = [m["images_per_s"] for m in measured]
        ratios = [s / b["images_per_s"] for s, b in zip(speeds, runs[(first, train)],
                                                        strict=True)]
        median = sorted(measured, key=lambda m: m["images_per_s"])[(len(measured) - 1) // 2]
        rows.append({"model": name, **median, "setting": mode, "images_per_s_rounds": speeds,
                     "peak_memory_mb": max((m["peak_memory_mb"] or 0) for m in measured) or None,
                     "ratio": statistics.median(ratios), "ratio_min": min(ratios),
                     "ratio_max": max(ratios)})
    return rows


BACKEND_SUFFIX = re.compile(r"^(?P<model>[^\[\]]+)\[(?P<backend>[^\[\]]*)\]$")


def split_backend(name: str) -> tuple[str, str | None]:
    """``"kat_tiny_patch16_224[triton]"`` -> ``("kat_tiny_patch16_224", "triton")``; a name
    without a suffix has backend None. Raises ``ValueError`` naming an unknown backend."""
    match = BACKEND_SUFFIX.match(name)
    if match is None:
        return name, None
    if match["backend"] not in PYTHON_BACKENDS:
        choices = " or ".join(f"{match['model']}[{backend}]" for backend in PYTHON_BACKENDS)
        raise ValueError(f"{name}: unknown op backend {match['backend']!r}; use {choices}")
    return match["model"], match["backend"]


def throughput_table(names: list[str], **kwargs: Any) -> list[dict[str, Any]]:
    """:func:`throughput_rows` of timm models by name (``kat_*`` and ``vit_*_<mixer>`` are
    registered by :mod:`katbench.models.vit`; ``name[triton]`` runs its op on Triton, see the
    module's docstring); the first name is the baseline."""
    import timm

    import katbench.models.vit  # noqa: F401  (registers kat_* / vit_*_kan)

    models, backends = {}, {}
    for name, (model, backend) in zip(names, map(split_backend, names), strict=True):
        torch.manual_seed(0)
        models[name] = timm.create_model(model, img_size=kwargs.get("img_size", 224))
        if backend:
            backends[name] = backend
    return throughput_rows(models, backends=backends, **kwargs)


def format_table(rows: list[dict[str, Any]]) -> list[str]:
    """Printable lines: per setting, phase and model the median images/s, the median ratio to
    the first model with its range over rounds, and peak memory."""
    lines = [f"{'setting':14s} {'phase':10s} {'model':30s} {'images/s':>10s} {'ratio':>6s} "
             f"{'range':>13s} {'peak MB':>8s}"]
    for r in sorted(rows, key=lambda r: (r["setting"], r["batch_size"], r["mode"] != "train")):
        peak = f"{r['peak_memory_mb']:.0f}" if r["peak_memory_mb"] is not None else "-"
        span = f"{r['ratio_min']:.3f}-{r['ratio_max']:.3f}"
        lines.append(f"{r['setting'] + ' b' + str(r['batch_size']):14s} {r['mode']:10s} "
                     f"{r['model']:30s} {r['images_per_s']:10.1f} {r['ratio']:6.3f} "
                     f"{span:>13s} {peak:>8s}")
    return lines
