"""Report builder: run folders -> tidy ``summary.csv`` -> ``summary.md`` and plots.

``python -m katbench.report [results_dir]`` reads every ``runs/<task>/<mixer>/seed<k>/
metrics.json``, writes ``summary.csv`` (``task,mixer,seed,metric,value,higher_is_better,
paper_value``; one row per run x metric), ``summary.md`` (per task: mean +- std over seeds per
mixer, the paper's number beside ours, the winner in bold) and ``plots/``. Every table and plot
is derived from the tidy rows or from the arrays each run exported; paper numbers come only from
``katbench/paper_results.yaml``. Runs without ``metrics.json`` (failed or unfinished) are listed
as missing, never counted as zeros.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

PAPER_RESULTS = Path(__file__).with_name("paper_results.yaml")
MIXER_ORDER = ("mlp", "kan", "grkan")
COLORS = {"mlp": "#4c72b0", "kan": "#dd8452", "grkan": "#55a868"}
COLUMNS = ["task", "mixer", "seed", "metric", "value", "higher_is_better", "paper_value"]


def paper_values() -> dict[str, Any]:
    """``{task: {"metric", "source", "values": {mixer: value}}}`` from paper_results.yaml."""
    import yaml

    return yaml.safe_load(PAPER_RESULTS.read_text()) or {}


def run_rows(metrics: dict[str, Any], paper: dict[str, Any]) -> list[dict[str, Any]]:
    """Tidy rows of one run: the selected test metric, the final one, size and cost."""
    m, hib = metrics["metric"], metrics["higher_is_better"]
    selected = metrics["best"] if metrics["selected_on"].startswith("val_") else metrics["final"]
    ref = paper.get(metrics["task"], {})
    key = f"test_{m}"
    rows = [(key, selected[key], hib, ref.get("values", {}).get(metrics["mixer"])
             if ref.get("metric") == key else None),
            (f"final_test_{m}", metrics["final"][key], hib, None),
            ("params", metrics["params"], False, None),
            ("train_time_s", metrics["train_time_s"], False, None),
            ("peak_memory_mb", metrics["peak_memory_mb"], False, None)]
    base = {"task": metrics["task"], "mixer": metrics["mixer"], "seed": metrics["seed"]}
    return [{**base, "metric": k, "value": float(v), "higher_is_better": h, "paper_value": p}
            for k, v, h, p in rows]


def collect(results_dir: Path) -> tuple[pd.DataFrame, dict[str, str]]:
    """All finished runs as tidy rows, and ``{task: family}``."""
    paper, rows, families = paper_values(), [], {}
    for path in sorted(results_dir.glob("runs/*/*/seed*/metrics.json")):
        metrics = json.loads(path.read_text())
        rows += run_rows(metrics, paper)
        families[metrics["task"]] = metrics.get("family", "other")
    return pd.DataFrame(rows, columns=COLUMNS), families


def _fmt(mean: float, std: float, n: int) -> str:
    text = f"{mean:.4g}"
    return text + (f" ± {std:.2g}" if n > 1 else "")


def markdown(table: pd.DataFrame, missing: list[str]) -> str:
    """``summary.md``: one table per task, mixers as rows, winner in bold."""
    lines = ["# katbench summary", "",
             "Test metric (mean ± std over seeds; validation-selected epoch where the task has a "
             "validation split, else the last epoch), the paper's value where it reports one, "
             "parameters and training time. **Bold**: best mixer of ours.", ""]
    main = table[table.metric.str.startswith("test_")]
    for task, rows in main.groupby("task", sort=True):
        metric, hib = rows.metric.iloc[0], bool(rows.higher_is_better.iloc[0])
        stats = rows.groupby("mixer").value.agg(["mean", "std", "count"]).fillna(0.0)
        winner = stats["mean"].idxmax() if hib else stats["mean"].idxmin()
        cost = table[(table.task == task)].pivot_table(index="mixer", columns="metric",
                                                       values="value", aggfunc="mean")
        paper = rows.groupby("mixer").paper_value.first()
        arrow = "↑" if hib else "↓"
        lines += [f"## {task}", "", f"| mixer | {metric} {arrow} | paper | params | "
                  "train time (s) |", "|---|---|---|---|---|"]
        for mixer in sorted(stats.index, key=_mixer_key):
            s = stats.loc[mixer]
            value = _fmt(s["mean"], s["std"], int(s["count"]))
            value = f"**{value}**" if mixer == winner else value
            ref = paper.get(mixer)
            ref_text = f"{ref:.4g}" if ref is not None and not pd.isna(ref) else "–"
            lines.append(f"| {mixer} | {value} | {ref_text} | {int(cost.loc[mixer, 'params'])} "
                         f"| {cost.loc[mixer, 'train_time_s']:.1f} |")
        lines.append("")
    if missing:
        lines += ["## Missing runs", "", *[f"- {m}" for m in missing], ""]
    return "\n".join(lines)


def _mixer_key(mixer: str) -> tuple[int, str]:
    return (MIXER_ORDER.index(mixer) if mixer in MIXER_ORDER else len(MIXER_ORDER), mixer)


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    os.replace(tmp, path)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def rational_curves(npz: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    """Evaluate each saved rational layer on ``x``: ``{layer: (len(x), groups)}``."""
    import torch

    from katbench.ops.reference import group_rational_reference

    data = np.load(npz)
    curves = {}
    for key in sorted(k for k in data.files if k.endswith(".numerator")):
        layer = key.removesuffix(".numerator")
        den = torch.from_numpy(data[f"{layer}.denominator"])
        num = torch.from_numpy(data[key]).expand(den.shape[0], -1)  # a shared row broadcasts
        variant = str(data[f"{layer}.variant"]) or "sum_abs"
        xs = torch.from_numpy(x).double()[:, None].expand(-1, den.shape[0]).contiguous()
        curves[layer] = group_rational_reference(xs, num, den, variant).numpy()
    return curves


def plot_run(run_dir: Path) -> list[Path]:
    """Per-run figures from the run's exported arrays (logged as MLflow artifacts)."""
    plt, out = _pyplot(), []
    if (run_dir / "rationals.npz").exists():
        x = np.linspace(-3, 3, 401)
        curves = rational_curves(run_dir / "rationals.npz", x)
        fig, axes = plt.subplots(1, len(curves), figsize=(3.2 * len(curves), 3.0), squeeze=False,
                                 layout="constrained")
        for ax, (layer, y) in zip(axes[0], curves.items(), strict=True):
            ax.plot(x, y, lw=1.5)
            ax.set_title(layer, fontsize=9)
            ax.set_xlabel("x")
            ax.grid(alpha=0.3)
        axes[0][0].set_ylabel("F(x) per group")
        fig.suptitle(f"learned rationals: {_run_label(run_dir)}", fontsize=10)
        out.append(_save(fig, run_dir / "rationals.png"))
    if (run_dir / "u_t.npz").exists():
        fig, ax = plt.subplots(figsize=(6, 3), layout="constrained")
        _plot_u_t(ax, np.load(run_dir / "u_t.npz"), _run_label(run_dir))
        out.append(_save(fig, run_dir / "u_t.png"))
    return out


def _run_label(run_dir: Path) -> str:
    return "/".join(run_dir.parts[-3:])


def _plot_u_t(ax: Any, data: Any, label: str, color: str = "C1") -> None:
    ax.plot(data["t"], data["exact"], color="black", lw=2.5, alpha=0.35, label="exact")
    ax.plot(data["t"], data["pred"], color=color, lw=1.3, label=label)
    ax.set_xlabel("t")
    ax.set_ylabel("u(t)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def plot_family_bars(table: pd.DataFrame, families: dict[str, str], out: Path) -> list[Path]:
    """One grouped bar chart per family: tasks x mixers, mean ± std, log axis for errors."""
    plt, paths = _pyplot(), []
    main = table[table.metric.str.startswith("test_")]
    for family in sorted(set(families.values())):
        rows = main[main.task.isin([t for t, f in families.items() if f == family])]
        stats = rows.groupby(["task", "mixer"]).value.agg(["mean", "std"]).fillna(0.0)
        tasks = sorted(rows.task.unique())
        mixers = sorted(rows.mixer.unique(), key=_mixer_key)
        fig, ax = plt.subplots(figsize=(max(4.0, 1.6 * len(tasks) + 1), 3.6))
        width = 0.8 / len(mixers)
        for i, mixer in enumerate(mixers):
            means = [stats["mean"].get((t, mixer), np.nan) for t in tasks]
            stds = [stats["std"].get((t, mixer), 0.0) for t in tasks]
            ax.bar(np.arange(len(tasks)) + (i - (len(mixers) - 1) / 2) * width, means, width,
                   yerr=stds, label=mixer, color=COLORS.get(mixer), capsize=2)
        hib = bool(rows.higher_is_better.iloc[0])
        if not hib and (rows.value > 0).all():
            ax.set_yscale("log")
        ax.set_xticks(np.arange(len(tasks)), tasks, rotation=20, ha="right", fontsize=8)
        ax.set_ylabel(f"{rows.metric.iloc[0]} ({'higher' if hib else 'lower'} is better)")
        ax.set_title(f"{family}: test metric per task and mixer")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
        paths.append(_save(fig, out / f"{family}_bars.png"))
    return paths


def plot_arrays(results_dir: Path, out: Path) -> list[Path]:
    """Fitting error surfaces, PINN u(t) and grkan rationals across tasks (seed 0 runs)."""
    plt, paths = _pyplot(), []
    surfaces = sorted(results_dir.glob("runs/*/*/seed0/surface.npz"))
    tasks = sorted({p.parts[-4] for p in surfaces})
    if tasks:
        mixers = sorted({p.parts[-3] for p in surfaces}, key=_mixer_key)
        fig, axes = plt.subplots(len(tasks), len(mixers) + 1, squeeze=False,
                                 figsize=(2.9 * (len(mixers) + 1), 2.5 * len(tasks)))
        for r, task in enumerate(tasks):
            found = {m: np.load(p) for m in mixers
                     if (p := results_dir / "runs" / task / m / "seed0" / "surface.npz").exists()}
            # One colour scale per row, so the mixers' errors compare at a glance.
            vmax = max(float(np.abs(d["pred"] - d["true"]).max()) for d in found.values())
            for c, mixer in enumerate(["target", *mixers]):
                ax = axes[r][c]
                if c > 0 and mixer not in found:
                    ax.axis("off")
                    continue
                d = found[mixer] if c > 0 else next(iter(found.values()))
                z = d["true"] if c == 0 else np.abs(d["pred"] - d["true"])
                im = ax.pcolormesh(d["x"], d["y"], z, cmap="viridis" if c == 0 else "magma",
                                   shading="auto", vmin=None if c == 0 else 0.0,
                                   vmax=None if c == 0 else vmax)
                fig.colorbar(im, ax=ax, fraction=0.046)
                ax.set_title(f"{d['formula']}" if c == 0 else f"{mixer}: |error|", fontsize=9)
                ax.tick_params(labelsize=7)
            axes[r][0].set_ylabel(task, fontsize=9)
        fig.tight_layout()
        paths.append(_save(fig, out / "function_fitting_error_surfaces.png"))
    for task_dir in sorted({p.parents[2] for p in results_dir.glob("runs/*/*/seed0/u_t.npz")}):
        fig, ax = plt.subplots(figsize=(7, 3.4))
        for run in sorted(task_dir.glob("*/seed0/u_t.npz"), key=lambda p: _mixer_key(
                p.parts[-3])):
            mixer = run.parts[-3]
            _plot_u_t(ax, np.load(run), mixer, COLORS.get(mixer, "C1"))
        handles, labels = ax.get_legend_handles_labels()
        keep = {lab: h for h, lab in zip(handles, labels, strict=True)}
        ax.legend(keep.values(), keep.keys(), fontsize=8)
        ax.set_title(f"{task_dir.name}: u(t), exact vs learned (seed 0)")
        paths.append(_save(fig, out / f"{task_dir.name}_u_t.png"))
    rationals = sorted(results_dir.glob("runs/*/grkan/seed0/rationals.npz"))
    if rationals:
        x = np.linspace(-3, 3, 401)
        curves = [(p.parts[-4], rational_curves(p, x)) for p in rationals]
        cols = max(len(c) for _, c in curves)
        fig, axes = plt.subplots(len(curves), cols, figsize=(3 * cols, 2.2 * len(curves)),
                                 squeeze=False)
        for r, (task, layers) in enumerate(curves):
            for c in range(cols):
                ax = axes[r][c]
                if c >= len(layers):
                    ax.axis("off")
                    continue
                layer, y = list(layers.items())[c]
                ax.plot(x, y, lw=1.3)
                ax.set_title(f"{task}: {layer}", fontsize=8)
                ax.grid(alpha=0.3)
                ax.tick_params(labelsize=7)
        fig.tight_layout()
        paths.append(_save(fig, out / "grkan_rationals.png"))
    return paths


def build_report(results_dir: str | Path, expected: list[str] | None = None) -> pd.DataFrame:
    """Write summary.csv, summary.md and plots/ under ``results_dir``; return the tidy table.

    ``expected`` lists ``task/mixer/seed<k>`` run ids the pipeline asked for; those without
    ``metrics.json`` are reported as missing.
    """
    from katbench.tracking import atomic_write_text

    results_dir = Path(results_dir)
    table, families = collect(results_dir)
    done = {f"{r.task}/{r.mixer}/seed{r.seed}" for r in table.itertuples()}
    missing = sorted(set(expected or []) - done)
    atomic_write_text(results_dir / "summary.csv", table.to_csv(index=False))
    atomic_write_text(results_dir / "summary.md", markdown(table, missing))
    if not table.empty:
        plot_family_bars(table, families, results_dir / "plots")
        plot_arrays(results_dir, results_dir / "plots")
    return table


if __name__ == "__main__":
    build_report(sys.argv[1] if len(sys.argv) > 1 else "results", sys.argv[2:] or None)
