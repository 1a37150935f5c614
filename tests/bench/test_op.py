"""Headline ratios of ``katbench.bench.op``."""

from __future__ import annotations

from katbench.bench.op import Measurement, ratios


def _row(impl: str, mode: str, ms: float, gpu_us: float | None) -> Measurement:
    return Measurement(impl, mode, "bfloat16", "64x1000x512", 8, 512, ms, 1.0, None, gpu_us)


def test_ratios_give_gpu_kernel_time_where_measured():
    rows = [_row("ours", "forward", 0.06, 48.0), _row("clone", "forward", 0.05, 40.0),
            _row("ours", "forward+backward", 0.15, 130.0),
            _row("gelu", "forward+backward", 0.12, None)]
    lines = ratios(rows, (8, 512))
    assert lines == ["[bfloat16] forward: ours / clone = 1.20x wall, 1.20x GPU kernel time",
                     "[bfloat16] fwd+bwd: ours / gelu = 1.25x"]


def test_ratios_compare_the_triton_kernels_with_ours_and_clone():
    rows = [_row("ours", "forward+backward", 0.10, 100.0),
            _row("triton", "forward+backward", 0.12, 125.0),
            _row("triton", "forward", 0.06, 45.0), _row("clone", "forward", 0.05, 40.0)]
    lines = ratios(rows, (8, 512))
    assert "[bfloat16] forward: triton / clone = 1.20x wall, 1.12x GPU kernel time" in lines
    assert "[bfloat16] fwd+bwd: triton / ours = 1.20x wall, 1.25x GPU kernel time" in lines
