"""Timing and memory helpers shared by every benchmark (one way to time things)."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch.utils.benchmark import Timer


def time_ms(fn: Callable[[], object], min_run_time: float) -> float:
    """Median milliseconds of ``fn()`` after one warm-up call (CUDA work is synchronised)."""
    fn()  # warm-up: kernel build, autotuning, torch.compile
    return Timer(stmt="fn()", globals={"fn": fn}).blocked_autorange(
        min_run_time=min_run_time).median * 1e3


def time_steps(step: Callable[[], object], steps: int, device: torch.device) -> float:
    """Seconds for ``steps`` back-to-back calls of ``step`` (CUDA work synchronised before and
    after, so queued kernels count): a training loop's own pace, host overhead included."""
    _synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _synchronize(device)
    return time.perf_counter() - start


def host_issue_us(fn: Callable[[], object], steps: int = 200) -> float:
    """Microseconds of host time to issue one ``fn()`` call on a CUDA device: the loop is timed
    without waiting for the GPU (if it is close to the GPU time, ``fn`` is bound by the host)."""
    fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    elapsed = time.perf_counter() - start
    torch.cuda.synchronize()
    return elapsed / steps * 1e6


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_mib(fn: Callable[[], object], device: torch.device) -> float | None:
    """Peak CUDA memory of one ``fn()`` call above what was allocated before (None on CPU)."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - base) / 2**20


def device_name(device: torch.device) -> str:
    """Human-readable device name for tables and file names."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def gpu_kernel_us(fn: Callable[[], object], steps: int = 20) -> dict[str, float]:
    """GPU time of each kernel of one ``fn()`` call, in microseconds (``torch.profiler``).

    Host overhead (Python, launches) is left out: this is the device-side cost that a CUDA
    graph or ``torch.compile`` would leave.
    """
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            fn()
        torch.cuda.synchronize()
    return {e.key: e.device_time_total / steps for e in prof.key_averages()
            if e.device_type == DeviceType.CUDA}


def host_op_us(fn: Callable[[], object], steps: int = 20) -> dict[str, float]:
    """Host (CPU) self time of each op of one ``fn()`` call, in microseconds (``torch.profiler``,
    whose own bookkeeping inflates every op alike): where the time to issue a step goes."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            fn()
    return {e.key: e.self_cpu_time_total / steps for e in prof.key_averages()}


def gpu_busy_us(fn: Callable[[], object], steps: int = 20) -> float:
    """GPU kernel time of one ``fn()`` call in microseconds, summed over its kernels."""
    return sum(gpu_kernel_us(fn, steps).values())
