"""``python -m katbench.bench op``: the GR-KAN op against its baselines, side by side.

``op`` times
forward and forward+backward of ``group_rational`` against the eager PyTorch reference, the
reference under ``torch.compile``, a loop over groups (one slice per group, as per-group PAU
layers would run), GELU and ``x.clone()`` (the memory-traffic floor), over groups and widths.
It prints a table (ms, GB/s, peak MiB), ratios, and writes CSV and PNG under ``results/bench/``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from katbench.bench.timing import peak_mib, time_ms
from katbench.ops import group_rational
from katbench.ops.reference import group_rational_reference

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class Measurement:
    """One timed configuration: an implementation, a pass and a tensor shape."""

    impl: str
    mode: str
    dtype: str
    shape: str
    groups: int
    width: int
    ms: float
    gb_per_s: float
    peak_mib: float | None


def looped_rational(x: torch.Tensor, numerator: torch.Tensor, denominator: torch.Tensor,
                    variant: str = "sum_abs") -> torch.Tensor:
    """Per-group loop baseline: evaluate each group's channel slice separately and concatenate."""
    groups = numerator.shape[0]
    return torch.cat([group_rational_reference(chunk, numerator[i:i + 1], denominator[i:i + 1],
                                               variant)
                      for i, chunk in enumerate(x.chunk(groups, dim=-1))], dim=-1)


IMPLS = ("ours", "vectorised", "compiled", "looped", "gelu", "clone")


def _activations(variant: str) -> dict[str, Callable]:
    compiled = torch.compile(group_rational_reference, dynamic=False)
    return {
        "ours": lambda x, a, b: group_rational(x, a, b, variant),
        "vectorised": lambda x, a, b: group_rational_reference(x, a, b, variant),
        "compiled": lambda x, a, b: compiled(x, a, b, variant),
        "looped": lambda x, a, b: looped_rational(x, a, b, variant),
        "gelu": lambda x, a, b: F.gelu(x),
        "clone": lambda x, a, b: x.clone(),
    }


def measure(impl: str, activation: Callable, mode: str, shape: tuple[int, ...], groups: int,
            dtype: torch.dtype, device: torch.device, min_run_time: float) -> Measurement:
    """Time ``impl`` for ``mode`` in {forward, forward+backward} on a fresh random tensor."""
    x = torch.randn(*shape, device=device, dtype=dtype)
    numerator = torch.randn(1, 6, device=device).expand(groups, 6).contiguous()
    denominator = torch.rand(groups, 4, device=device)
    if mode == "forward":
        def step():
            with torch.no_grad():
                return activation(x, numerator, denominator)
        traffic = 2 * x.numel() * x.element_size()
    else:
        x.requires_grad_(impl != "clone")
        numerator.requires_grad_()
        denominator.requires_grad_()
        grad = torch.randn_like(x)

        def step():
            y = activation(x, numerator, denominator)
            if y.requires_grad:
                y.backward(grad)
        traffic = 5 * x.numel() * x.element_size()  # read x, write y; read x, grad; write dx
    ms = time_ms(step, min_run_time)
    return Measurement(impl, mode, str(dtype).removeprefix("torch."), "x".join(map(str, shape)),
                       groups, shape[-1], ms, traffic / ms / 1e6, peak_mib(step, device))


def run_op_benchmark(device: torch.device, dtypes: list[str], impls: list[str],
                     sweep_impls: list[str], leading: tuple[int, ...], groups: list[int],
                     widths: list[int], headline: tuple[int, int], min_run_time: float,
                     variant: str = "sum_abs") -> list[Measurement]:
    """Headline shape with every implementation, then the groups/width sweep."""
    activations = _activations(variant)
    rows = []
    configs = [(headline[0], headline[1], impls)]
    configs += [(g, headline[1], sweep_impls) for g in groups if g != headline[0]]
    configs += [(headline[0], w, sweep_impls) for w in widths if w != headline[1]]
    for dtype_name in dtypes:
        dtype = DTYPES[dtype_name]
        for group_count, width, names in configs:
            for name in names:
                for mode in ("forward", "forward+backward"):
                    if name == "clone" and mode != "forward":
                        continue
                    row = measure(name, activations[name], mode, (*leading, width), group_count,
                                  dtype, device, min_run_time)
                    rows.append(row)
                    print(_format_row(row), flush=True)
    return rows


def _format_row(row: Measurement) -> str:
    peak = "-" if row.peak_mib is None else f"{row.peak_mib:9.1f}"
    return (f"{row.impl:>10} {row.mode:>16} {row.dtype:>8} g={row.groups:<3} D={row.width:<5} "
            f"{row.ms:9.3f} ms {row.gb_per_s:8.1f} GB/s  peak {peak} MiB")


RATIOS = (  # (label, numerator (impl, mode), denominator (impl, mode))
    ("forward: ours / clone", ("ours", "forward"), ("clone", "forward")),
    ("fwd+bwd: ours / gelu", ("ours", "forward+backward"), ("gelu", "forward+backward")),
    ("fwd+bwd: ours / torch.compile", ("ours", "forward+backward"),
     ("compiled", "forward+backward")),
    ("fwd+bwd: eager reference / ours", ("vectorised", "forward+backward"),
     ("ours", "forward+backward")),
    ("fwd+bwd: looped / ours", ("looped", "forward+backward"), ("ours", "forward+backward")),
)


def ratios(rows: list[Measurement], headline: tuple[int, int]) -> list[str]:
    """Headline ratios (ours vs the baselines), one line each, per dtype."""
    lines = []
    for dtype in sorted({r.dtype for r in rows}):
        at = {(r.impl, r.mode): r.ms for r in rows
              if r.dtype == dtype and (r.groups, r.width) == headline}
        for label, top, bottom in RATIOS:
            if top in at and bottom in at:
                lines.append(f"[{dtype}] {label} = {at[top] / at[bottom]:.2f}x")
    return lines


def write_outputs(rows: list[Measurement], out_dir: Path, name: str,
                  headline: tuple[int, int]) -> tuple[Path, Path]:
    """Write the tidy CSV and a throughput-vs-groups/width figure (paper Fig. 6 style)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    out_dir.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame([asdict(r) for r in rows])
    csv_path, png_path = out_dir / f"{name}.csv", out_dir / f"{name}.png"
    frame.to_csv(csv_path, index=False)
    dtypes = sorted(frame.dtype.unique())
    fig, axes = plt.subplots(len(dtypes), 2, figsize=(11, 4 * len(dtypes)), squeeze=False)
    fb = frame[frame["mode"] == "forward+backward"]
    for row_axes, dtype in zip(axes, dtypes, strict=True):
        sub = fb[fb.dtype == dtype]
        for ax, axis, fixed, label in ((row_axes[0], "groups", ("width", headline[1]), "groups g"),
                                       (row_axes[1], "width", ("groups", headline[0]), "width D")):
            part = sub[sub[fixed[0]] == fixed[1]]
            for impl, lines in part.groupby("impl"):
                lines = lines.sort_values(axis)
                ax.plot(lines[axis], lines["ms"], marker="o", label=impl)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel(label)
            ax.set_ylabel("forward+backward ms (lower is better)")
            ax.set_title(f"{dtype}, {fixed[0]}={fixed[1]}")
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=8)
    fig.suptitle(f"group_rational vs baselines: {name}")
    fig.tight_layout()
    fig.savefig(png_path, dpi=120)
    plt.close(fig)
    return csv_path, png_path
