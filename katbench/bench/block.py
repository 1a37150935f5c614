"""``python -m katbench.bench block``: every registered mixer's block, side by side.

Each block comes from :func:`katbench.mixers.build_mixer` (``mlp``: fc1 -> GELU -> fc2;
``grkan``: rational -> fc1 -> rational -> fc2; the KAN mixers, ``pau`` and ``swiglu``) at the
ViT-T/S/B widths ``D -> 4D -> D``. One forward+backward on ``tokens`` rows runs under bf16
autocast on CUDA (float32 on CPU); the table gives ms, peak memory and the ratios to ``mlp``.
On CUDA ``grkan[triton]`` is the grkan block again with the Triton kernels serving the op
(``grkan`` has the backend loaded: the compiled kernels where a toolkit exists).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from katbench.bench.op import triton_skipped
from katbench.bench.timing import gpu_busy_us, peak_mib, time_ms
from katbench.mixers import DEFAULT_RECOMPUTE, MIXERS, build_mixer
from katbench.ops import use_backend

WIDTHS = {"T": (192, 768), "S": (384, 1536), "B": (768, 3072)}


@dataclass
class BlockMeasurement:
    """Forward+backward of one mixer block at one ViT size."""

    size: str
    mixer: str
    ms: float
    peak_mib: float | None
    gpu_us: float | None  # GPU kernel time per step (CUDA): the host-independent measure


def block_step(mixer: str, size: str, tokens: tuple[int, int], device: torch.device,
               **options: Any) -> Callable[[], None]:
    """One forward+backward of ``build_mixer(mixer, D, 4D, **options)`` on ``tokens + (D,)``
    inputs.

    Each step starts from cleared gradients, as a training step after
    ``zero_grad(set_to_none=True)`` does (no gradient-accumulation kernels).
    """
    width, hidden = WIDTHS[size]
    block = build_mixer(mixer, width, hidden, **options).to(device)
    x = torch.randn(*tokens, width, device=device, requires_grad=True)
    on_cuda = device.type == "cuda"
    grad = torch.randn_like(x, dtype=torch.bfloat16 if on_cuda else torch.float32)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=on_cuda)
    leaves = [x, *block.parameters()]

    def step() -> None:
        for leaf in leaves:
            leaf.grad = None
        with autocast:
            y = block(x)
        y.backward(grad)

    return step


def measure_block(mixer: str, size: str, tokens: tuple[int, int], device: torch.device,
                  min_run_time: float, backend: str | None = None,
                  **options: Any) -> BlockMeasurement:
    """Time forward+backward of ``build_mixer(mixer, D, 4D, **options)`` on ``tokens + (D,)``
    inputs; ``backend`` (e.g. ``"triton"``) serves the rational op instead of the loaded one."""
    serving = use_backend(backend, device.type) if backend else contextlib.nullcontext()
    with serving:
        step = block_step(mixer, size, tokens, device, **options)
        gpu_us = gpu_busy_us(step) if device.type == "cuda" else None
        ms, peak = time_ms(step, min_run_time), peak_mib(step, device)
    return BlockMeasurement(size, mixer if backend is None else f"{mixer}[{backend}]", ms, peak,
                            gpu_us)


def run_block_benchmark(device: torch.device, sizes: list[str], tokens: tuple[int, int],
                        min_run_time: float, recompute: str = DEFAULT_RECOMPUTE,
                        mixers: tuple[str, ...] = MIXERS) -> list[str]:
    """Measure each of ``mixers`` at each size (and ``grkan[triton]`` after ``grkan`` on CUDA);
    return printable lines with the ratios to ``mlp`` (measured first at each size).

    ``time`` is wall time (host overhead included, so it moves with the host's speed);
    ``GPU`` is GPU kernel time (CUDA only), the ratio of what the GPU does. ``recompute`` is
    the grkan blocks' ``recompute`` mode (rational outputs recomputed in the backward instead
    of kept).
    """
    rows: list[tuple[str, str | None]] = [("mlp", None)]
    for name in (m for m in mixers if m != "mlp"):
        rows.append((name, None))
        if name == "grkan":
            skipped = triton_skipped(device)
            if skipped:
                print(f"grkan[triton]: skipped ({skipped})", flush=True)
            else:
                rows.append((name, "triton"))
    lines = [f"{'size':>4} {'mixer':<13} {'ms':>9} {'time/mlp':>8} {'MiB':>9} {'mem/mlp':>8} "
             f"{'GPU/mlp':>8}"]
    print(lines[0], flush=True)
    for size in sizes:
        base: BlockMeasurement | None = None
        for name, backend in rows:
            options = {"recompute": recompute} if name == "grkan" else {}
            m = measure_block(name, size, tokens, device, min_run_time, backend, **options)
            base = base or m
            mem = (f"{m.peak_mib:9.1f} {m.peak_mib / base.peak_mib:8.2f}" if base.peak_mib
                   else f"{'-':>9} {'-':>8}")
            gpu = f"{m.gpu_us / base.gpu_us:8.2f}" if base.gpu_us else f"{'-':>8}"
            lines.append(f"{size:>4} {m.mixer:<13} {m.ms:9.3f} {m.ms / base.ms:8.2f} {mem} {gpu}")
            print(lines[-1], flush=True)
    return lines
