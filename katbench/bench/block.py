"""``python -m katbench.bench block``: a KAT block against a GELU MLP block, side by side.

Both blocks come from :func:`katbench.mixers.build_mixer` (``grkan``: rational -> fc1 ->
rational -> fc2; ``mlp``: fc1 -> GELU -> fc2) at the ViT-T/S/B widths. One forward+backward
on ``tokens`` rows runs under bf16 autocast on CUDA (float32 on CPU); the table gives ms, peak
memory and KAT/MLP ratios.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from katbench.bench.timing import gpu_busy_us, peak_mib, time_ms
from katbench.mixers import DEFAULT_RECOMPUTE, build_mixer

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
                  min_run_time: float, **options: Any) -> BlockMeasurement:
    """Time forward+backward of ``build_mixer(mixer, D, 4D, **options)`` on ``tokens + (D,)``
    inputs."""
    step = block_step(mixer, size, tokens, device, **options)
    gpu_us = gpu_busy_us(step) if device.type == "cuda" else None
    return BlockMeasurement(size, mixer, time_ms(step, min_run_time), peak_mib(step, device),
                            gpu_us)


def run_block_benchmark(device: torch.device, sizes: list[str], tokens: tuple[int, int],
                        min_run_time: float, recompute: str = DEFAULT_RECOMPUTE) -> list[str]:
    """Measure mlp and grkan at each size; return printable lines with the ratios.

    ``time ratio`` is wall time (host overhead included, so it moves with the host's speed);
    ``GPU ratio`` is GPU kernel time (CUDA only), the ratio of what the GPU does. ``recompute``
    is the grkan blocks' ``recompute`` mode (rational outputs recomputed in the backward
    instead of kept).
    """
    lines = [f"{'size':>4} {'mlp ms':>9} {'grkan ms':>9} {'time ratio':>10} "
             f"{'mlp MiB':>9} {'grkan MiB':>9} {'mem ratio':>9} {'GPU ratio':>9}"]
    print(lines[0], flush=True)
    for size in sizes:
        mlp = measure_block("mlp", size, tokens, device, min_run_time)
        kat = measure_block("grkan", size, tokens, device, min_run_time, recompute=recompute)
        mem = (f"{mlp.peak_mib:9.1f} {kat.peak_mib:9.1f} {kat.peak_mib / mlp.peak_mib:9.2f}"
               if mlp.peak_mib else f"{'-':>9} {'-':>9} {'-':>9}")
        gpu = f"{kat.gpu_us / mlp.gpu_us:9.2f}" if mlp.gpu_us else f"{'-':>9}"
        lines.append(f"{size:>4} {mlp.ms:9.3f} {kat.ms:9.3f} {kat.ms / mlp.ms:10.2f} {mem} {gpu}")
        print(lines[-1], flush=True)
    return lines
