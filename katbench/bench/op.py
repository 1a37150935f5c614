"""``python -m katbench.bench op``: the GR-KAN op against its baselines, side by side.

``op`` times
forward and forward+backward of ``group_rational`` (``ours``: the backend loaded, the compiled
kernels where a toolkit exists; ``triton``: the Triton kernels, CUDA only) against the eager
PyTorch reference, the reference under ``torch.compile``, a loop over groups (one slice per
group, as per-group PAU layers would run), the fixed activations ReLU/GELU/SiLU/PReLU and
``x.clone()`` (the memory-traffic floor), over groups and widths. A forward+backward step starts
from cleared gradients, as a training step after ``zero_grad(set_to_none=True)`` does. It
prints a table (ms, GB/s, peak MiB) and the headline ratios, and writes under
``results/bench/``:

* ``op_<device>.csv`` and ``.png``: every measurement; throughput (batches/s) and peak memory
  against groups and widths (the paper's Figures 6 and 7);
* ``table7_<device>.csv`` and ``.png``: ReLU, GELU, SiLU, PReLU and GR-KAN throughput and peak
  memory at the headline shape (the paper's Table 7).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from katbench.bench.timing import gpu_busy_us, peak_mib, time_ms
from katbench.ops import group_rational, use_backend
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
    gpu_us: float | None = None  # GPU kernel time per call (CUDA, when asked for)


def looped_rational(x: torch.Tensor, numerator: torch.Tensor, denominator: torch.Tensor,
                    variant: str = "sum_abs") -> torch.Tensor:
    """Per-group loop baseline: evaluate each group's channel slice separately and concatenate."""
    groups = denominator.shape[0]
    rows = numerator.expand(groups, -1)  # a shared (1, m+1) numerator serves every group
    return torch.cat([group_rational_reference(chunk, rows[i:i + 1], denominator[i:i + 1],
                                               variant)
                      for i, chunk in enumerate(x.chunk(groups, dim=-1))], dim=-1)


IMPLS = ("ours", "triton", "vectorised", "compiled", "looped", "relu", "gelu", "silu", "prelu",
         "clone")
RATIONALS = ("ours", "triton", "vectorised", "compiled", "looped")
TABLE7 = {"relu": "ReLU", "gelu": "GELU", "silu": "SiLU", "prelu": "PReLU", "ours": "GR-KAN",
          "triton": "GR-KAN (Triton)"}


def triton_skipped(device: torch.device) -> str | None:
    """Why the ``triton`` rows cannot be timed on ``device``, or None: they time CUDA tensors (on
    CPU Triton only interprets, which would time Python)."""
    if device.type != "cuda":
        return "the Triton kernels are timed on CUDA devices only"
    try:
        with use_backend("triton", device.type):
            return None
    except (ImportError, RuntimeError, ValueError) as error:
        return str(error)


def activations(variant: str) -> dict[str, Callable]:
    """``impl -> f(x, *parameters)``; parameters come from :func:`_parameters`."""
    compiled = torch.compile(group_rational_reference, dynamic=False)
    return {
        "ours": lambda x, a, b: group_rational(x, a, b, variant),
        "triton": lambda x, a, b: group_rational(x, a, b, variant),  # under use_backend
        "vectorised": lambda x, a, b: group_rational_reference(x, a, b, variant),
        "compiled": lambda x, a, b: compiled(x, a, b, variant),
        "looped": lambda x, a, b: looped_rational(x, a, b, variant),
        "relu": F.relu,
        "gelu": F.gelu,
        "silu": F.silu,
        "prelu": F.prelu,
        "clone": torch.clone,
    }


def _parameters(impl: str, groups: int, device: torch.device,
                dtype: torch.dtype) -> list[torch.Tensor]:
    """Learnable parameters of ``impl``: rational coefficients, PReLU's slope, or none."""
    if impl in RATIONALS:
        # GR-KAN's shared numerator (one row for all groups) and per-group denominators
        return [torch.randn(1, 6, device=device), torch.rand(groups, 4, device=device)]
    if impl == "prelu":
        return [torch.full((1,), 0.25, device=device, dtype=dtype)]
    return []


def build_step(activation: Callable, impl: str, mode: str, shape: tuple[int, ...], groups: int,
               dtype: torch.dtype, device: torch.device) -> tuple[Callable[[], object], int]:
    """One ``mode`` step of ``impl`` on a fresh random tensor, and the bytes it must move.

    A forward+backward step starts from cleared gradients, as after
    ``zero_grad(set_to_none=True)``.
    """
    if impl == "compiled":  # a fresh compile per shape: dynamo's recompile limit would
        torch._dynamo.reset()  # otherwise fall back to eager after a few sweep shapes
    x = torch.randn(*shape, device=device, dtype=dtype)
    parameters = _parameters(impl, groups, device, dtype)
    if mode == "forward":
        def forward():
            with torch.no_grad():
                return activation(x, *parameters)
        return forward, 2 * x.numel() * x.element_size()
    leaves = [x.requires_grad_(), *(p.requires_grad_() for p in parameters)]
    grad = torch.randn_like(x)

    def forward_backward():
        for leaf in leaves:
            leaf.grad = None
        activation(x, *parameters).backward(grad)
    return forward_backward, 5 * x.numel() * x.element_size()  # x, y; x, grad, dx


def measure(impl: str, activation: Callable, mode: str, shape: tuple[int, ...], groups: int,
            dtype: torch.dtype, device: torch.device, min_run_time: float,
            gpu_time: bool = False) -> Measurement:
    """Time ``impl`` for ``mode`` in {forward, forward+backward} (see :func:`build_step`).

    ``gpu_time`` also records the GPU kernel time per call (CUDA only, :func:`gpu_busy_us`).
    ``triton`` runs the op with the Triton kernels serving ``device`` (:func:`use_backend`).
    """
    serving = (use_backend("triton", device.type) if impl == "triton"
               else contextlib.nullcontext())
    with serving:
        step, traffic = build_step(activation, impl, mode, shape, groups, dtype, device)
        ms = time_ms(step, min_run_time)
        busy = gpu_busy_us(step) if gpu_time and device.type == "cuda" else None
        peak = peak_mib(step, device)
    return Measurement(impl, mode, str(dtype).removeprefix("torch."), "x".join(map(str, shape)),
                       groups, shape[-1], ms, traffic / ms / 1e6, peak, busy)


def run_op_benchmark(device: torch.device, dtypes: list[str], impls: list[str],
                     sweep_impls: list[str], leading: tuple[int, ...], groups: list[int],
                     widths: list[int], headline: tuple[int, int], min_run_time: float,
                     variant: str = "sum_abs",
                     sweep_dtypes: list[str] | None = None) -> list[Measurement]:
    """Headline shape with every implementation, then the groups/width sweep.

    The sweep runs for ``sweep_dtypes`` (default: the first of ``dtypes``). On CUDA the headline
    rows also record GPU kernel time, the host-independent side of the ratios.
    """
    table = activations(variant)
    skipped = triton_skipped(device) if "triton" in impls + sweep_impls else None
    if skipped:
        print(f"triton: skipped ({skipped})", flush=True)
        impls = [name for name in impls if name != "triton"]
        sweep_impls = [name for name in sweep_impls if name != "triton"]
    sweep_dtypes = dtypes[:1] if sweep_dtypes is None else sweep_dtypes
    rows = []
    sweep = [(g, headline[1], sweep_impls) for g in groups if g != headline[0]]
    sweep += [(headline[0], w, sweep_impls) for w in widths if w != headline[1]]
    for dtype_name in dtypes:
        dtype = DTYPES[dtype_name]
        configs = [(headline[0], headline[1], impls)]
        configs += sweep if dtype_name in sweep_dtypes else []
        for group_count, width, names in configs:
            for name in names:
                for mode in ("forward", "forward+backward"):
                    if name == "clone" and mode != "forward":
                        continue
                    row = measure(name, table[name], mode, (*leading, width), group_count,
                                  dtype, device, min_run_time,
                                  gpu_time=(group_count, width) == headline)
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
    ("forward: triton / clone", ("triton", "forward"), ("clone", "forward")),
    ("fwd+bwd: triton / ours", ("triton", "forward+backward"), ("ours", "forward+backward")),
    ("fwd+bwd: triton / gelu", ("triton", "forward+backward"), ("gelu", "forward+backward")),
)


def ratios(rows: list[Measurement], headline: tuple[int, int]) -> list[str]:
    """Headline ratios (ours vs the baselines), one line each, per dtype: of wall time, and of
    GPU kernel time where both rows have it (wall time of small, fast steps is the host's)."""
    lines = []
    for dtype in sorted({r.dtype for r in rows}):
        at = {(r.impl, r.mode): r for r in rows
              if r.dtype == dtype and (r.groups, r.width) == headline}
        for label, top, bottom in RATIOS:
            if top in at and bottom in at:
                line = f"[{dtype}] {label} = {at[top].ms / at[bottom].ms:.2f}x"
                if at[top].gpu_us and at[bottom].gpu_us:
                    line += f" wall, {at[top].gpu_us / at[bottom].gpu_us:.2f}x GPU kernel time"
                lines.append(line)
    return lines


def write_outputs(rows: list[Measurement], out_dir: Path, name: str,
                  headline: tuple[int, int]) -> list[Path]:
    """Write every measurement (CSV), Figures 6/7 (PNG) and Table 7 (CSV and PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    out_dir.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame([asdict(r) for r in rows])
    frame["batches_per_s"] = 1e3 / frame["ms"]
    csv_path, png_path = out_dir / f"{name}.csv", out_dir / f"{name}.png"
    frame.to_csv(csv_path, index=False)
    _plot_sweeps(frame, headline, png_path, f"group_rational vs baselines: {name}", plt)
    written = [csv_path, png_path]
    at_headline = frame[(frame.groups == headline[0]) & (frame.width == headline[1])
                        & frame.impl.isin(list(TABLE7))]
    if not at_headline.empty:
        table = at_headline.assign(activation=at_headline.impl.map(TABLE7))[
            ["activation", "dtype", "mode", "batches_per_s", "ms", "peak_mib"]]
        table7_csv, table7_png = (out_dir / f"table7_{name.removeprefix('op_')}.csv",
                                  out_dir / f"table7_{name.removeprefix('op_')}.png")
        table.to_csv(table7_csv, index=False)
        _plot_table7(table, table7_png, plt)
        written += [table7_csv, table7_png]
    return written


def _plot_sweeps(frame, headline: tuple[int, int], path: Path, title: str, plt) -> None:
    """Figures 6 and 7: batches/s and peak MiB against groups (D fixed) and widths (g fixed)."""
    sweep_dtype = frame.dtype.iloc[0]
    sub = frame[frame.dtype == sweep_dtype]
    modes = [m for m in ("forward", "forward+backward") if m in set(sub["mode"])]
    fig, axes = plt.subplots(len(modes), 4, figsize=(18, 4 * len(modes)), squeeze=False)
    panels = (("groups", ("width", headline[1]), "batches_per_s", "batches/s (higher is better)"),
              ("groups", ("width", headline[1]), "peak_mib", "peak MiB (lower is better)"),
              ("width", ("groups", headline[0]), "batches_per_s", "batches/s (higher is better)"),
              ("width", ("groups", headline[0]), "peak_mib", "peak MiB (lower is better)"))
    for row_axes, mode in zip(axes, modes, strict=True):
        for ax, (axis, fixed, column, label) in zip(row_axes, panels, strict=True):
            part = sub[(sub["mode"] == mode) & (sub[fixed[0]] == fixed[1])
                       & sub.impl.isin(list(RATIONALS) + ["gelu"])]
            if column == "peak_mib" and part[column].isna().all():
                ax.set_axis_off()
                continue
            for impl, lines in part.groupby("impl"):
                lines = lines.sort_values(axis)
                ax.plot(lines[axis], lines[column], marker="o", label=impl)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("groups g" if axis == "groups" else "width D")
            ax.set_ylabel(label)
            ax.set_title(f"{mode}, {sweep_dtype}, {fixed[0]}={fixed[1]}", fontsize=9)
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_table7(table, path: Path, plt) -> None:
    """Table 7 as bars: batches/s per activation and dtype, one panel per pass."""
    modes = list(dict.fromkeys(table["mode"]))
    fig, axes = plt.subplots(1, len(modes), figsize=(6 * len(modes), 4), squeeze=False)
    for ax, mode in zip(axes[0], modes, strict=True):
        pivot = table[table["mode"] == mode].pivot_table(
            index="activation", columns="dtype", values="batches_per_s")
        pivot = pivot.reindex([a for a in TABLE7.values() if a in pivot.index])
        pivot.plot.bar(ax=ax, rot=0)
        ax.set_ylabel("batches/s (higher is better)")
        ax.set_title(mode)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle("Table 7: activation throughput at the headline shape")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
