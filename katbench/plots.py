"""Report figures: per-run plots (rationals, u(t)) and the cross-run figures of ``plots/``.

Bar charts are derived from the tidy summary table; surfaces, u(t) curves and rational
functions from the arrays each run exported (``surface.npz``, ``u_t.npz``, ``rationals.npz``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

MIXER_ORDER = ("mlp", "kan", "grkan")
COLORS = {"mlp": "#4c72b0", "kan": "#dd8452", "grkan": "#55a868"}


def mixer_key(mixer: str) -> tuple[int, str]:
    """Sort key: mlp, kan, grkan first, any other mixer after them by name."""
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
        num = torch.from_numpy(data[key])  # (1, m+1) when shared by all groups
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
    rel = np.linalg.norm(data["pred"] - data["exact"]) / np.linalg.norm(data["exact"])
    ax.plot(data["t"], data["exact"], color="black", lw=2.5, alpha=0.35, label="exact")
    ax.plot(data["t"], data["pred"], color=color, lw=1.3, label=f"{label} (rel. L2 {rel:.2g})")
    ax.set_xlabel("t")
    ax.set_ylabel("u(t)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def plot_family_bars(table: pd.DataFrame, families: dict[str, str], out: Path) -> list[Path]:
    """One figure per family, one panel per test metric: tasks x mixers, mean ± std over seeds.

    Tasks of a family may report different metrics (graph: MAE and accuracy), so each metric
    gets its own axis; error metrics use a log axis when all values are positive.
    """
    plt, paths = _pyplot(), []
    main = table[table.metric.str.startswith("test_")]
    for family in sorted(set(families.values())):
        rows = main[main.task.isin([t for t, f in families.items() if f == family])]
        metrics = sorted(rows.metric.unique())
        mixers = sorted(rows.mixer.unique(), key=mixer_key)
        widths = [max(1, rows[rows.metric == m].task.nunique()) for m in metrics]
        fig, axes = plt.subplots(1, len(metrics), squeeze=False, layout="constrained",
                                 figsize=(max(4.5, 1.5 * sum(widths) + 1.5 * len(metrics)), 3.8),
                                 gridspec_kw={"width_ratios": widths})
        for ax, metric in zip(axes[0], metrics, strict=True):
            sub = rows[rows.metric == metric]
            stats = sub.groupby(["task", "mixer"]).value.agg(["mean", "std"]).fillna(0.0)
            tasks = sorted(sub.task.unique())
            width = 0.8 / len(mixers)
            several = bool((sub.groupby(["task", "mixer"]).size() > 1).any())
            for i, mixer in enumerate(mixers):
                means = [stats["mean"].get((t, mixer), np.nan) for t in tasks]
                stds = [stats["std"].get((t, mixer), 0.0) for t in tasks]
                bars = ax.bar(np.arange(len(tasks)) + (i - (len(mixers) - 1) / 2) * width,
                              means, width, yerr=stds if several else None, label=mixer,
                              color=COLORS.get(mixer), capsize=2)
                ax.bar_label(bars, fmt="%.3g", fontsize=6, rotation=90, padding=2)
            hib = bool(sub.higher_is_better.iloc[0])
            positive = sub.value[sub.value > 0]
            # A log axis only where the values span more than a decade (fitting MSEs).
            if len(positive) == len(sub) and positive.max() > 10 * positive.min():
                ax.set_yscale("log")
                ax.set_ylim(top=positive.max() * 8)
            else:
                ax.set_ylim(0, sub.value.max() * 1.25)
            ax.set_xticks(np.arange(len(tasks)), tasks, rotation=25, ha="right", fontsize=8)
            ax.set_ylabel(f"{metric} ({'higher' if hib else 'lower'} is better)", fontsize=9)
            ax.grid(axis="y", alpha=0.3)
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncols=len(mixers), fontsize=8)
        fig.suptitle(f"{family}: test metric per task and mixer (mean ± std over seeds)",
                     fontsize=10)
        paths.append(_save(fig, out / f"{family}_bars.png"))
    return paths


def _plot_rationals(runs: list[Path], path: Path, family: str, max_cols: int = 6) -> Path:
    """One row per task, one panel per rational layer (evenly spaced ones past ``max_cols``;
    each run's own ``rationals.png`` has them all), one curve per group."""
    plt = _pyplot()
    x = np.linspace(-3, 3, 401)
    curves = [(p.parts[-4], rational_curves(p, x)) for p in runs]
    cols = min(max_cols, max(len(c) for _, c in curves))
    fig, axes = plt.subplots(len(curves), cols, figsize=(2.6 * cols, 2.1 * len(curves) + 0.5),
                             squeeze=False, layout="constrained")
    for r, (task, layers) in enumerate(curves):
        names = list(layers)
        shown = [names[round(i)] for i in np.linspace(0, len(names) - 1, min(cols, len(names)))]
        for c in range(cols):
            ax = axes[r][c]
            if c >= len(shown):
                ax.axis("off")
                continue
            ax.plot(x, layers[shown[c]], lw=1.2)
            ax.set_title(shown[c], fontsize=8)
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=7)
        note = f" ({len(shown)} of {len(names)})" if len(shown) < len(names) else ""
        axes[r][0].set_ylabel(f"{task}{note}", fontsize=8)
    fig.suptitle(f"{family}: learned GR-KAN rationals F(x), one curve per group (grkan, seed 0)",
                 fontsize=10)
    return _save(fig, path)


def plot_arrays(results_dir: Path, out: Path, families: dict[str, str] | None = None
                ) -> list[Path]:
    """Fitting error surfaces, PINN u(t) and grkan rationals per family (seed 0 runs)."""
    plt, paths = _pyplot(), []
    surfaces = sorted(results_dir.glob("runs/*/*/seed0/surface.npz"))
    tasks = sorted({p.parts[-4] for p in surfaces})
    if tasks:
        mixers = sorted({p.parts[-3] for p in surfaces}, key=mixer_key)
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
        for run in sorted(task_dir.glob("*/seed0/u_t.npz"), key=lambda p: mixer_key(
                p.parts[-3])):
            mixer = run.parts[-3]
            _plot_u_t(ax, np.load(run), mixer, COLORS.get(mixer, "C1"))
        handles, labels = ax.get_legend_handles_labels()
        keep = {lab: h for h, lab in zip(handles, labels, strict=True)}
        ax.legend(keep.values(), keep.keys(), fontsize=8)
        ax.set_title(f"{task_dir.name}: u(t), exact vs learned (seed 0)")
        paths.append(_save(fig, out / f"{task_dir.name}_u_t.png"))
    by_family: dict[str, list[Path]] = {}
    for npz in sorted(results_dir.glob("runs/*/grkan/seed0/rationals.npz")):
        by_family.setdefault((families or {}).get(npz.parts[-4], "other"), []).append(npz)
    for family, runs in sorted(by_family.items()):
        paths.append(_plot_rationals(runs, out / f"grkan_rationals_{family}.png", family))
    return paths




Curves = dict[str, dict[tuple[str, str, bool], dict[str, list[pd.Series]]]]


def plot_family_curves(results_dir: Path, families: dict[str, str], out: Path) -> list[Path]:
    """One figure per family, one panel per task: the test metric against the epoch, per mixer
    the mean over seeds (line) and their range (band), from each run's ``history.jsonl``.

    The reported value is taken at the validation-selected epoch, so a curve that falls after
    an early peak shows overfitting the selection avoided. Runs without a history are skipped.
    """
    plt, paths = _pyplot(), []
    for family, panels in sorted(_test_curves(results_dir, families).items()):
        cols = min(4, len(panels))
        rows = -(-len(panels) // cols)
        fig, axes = plt.subplots(rows, cols, squeeze=False, layout="constrained",
                                 figsize=(3.6 * cols, 2.8 * rows + 0.4))
        for ax, (panel, by_mixer) in zip(axes.flat, sorted(panels.items()), strict=False):
            _plot_curve_panel(ax, panel, by_mixer)
        for ax in list(axes.flat)[len(panels):]:
            ax.axis("off")
        fig.suptitle(f"{family}: test metric during training (line: mean over seeds, band: "
                     "min to max)", fontsize=10)
        paths.append(_save(fig, out / f"{family}_curves.png"))
    return paths


def _test_curves(results_dir: Path, families: dict[str, str]) -> Curves:
    """family -> (task, metric key, higher is better) -> mixer -> one test-metric series per
    seed (indexed by epoch), from the runs' histories."""
    from katbench.tracking import read_history

    curves: Curves = {}
    for metrics_path in sorted(results_dir.glob("runs/*/*/seed*/metrics.json")):
        run = metrics_path.parent
        metrics = json.loads(metrics_path.read_text())
        key = f"test_{metrics['metric']}"
        points = {row["epoch"]: row[key] for row in read_history(run) if key in row}
        if points:
            panel = (run.parts[-3], key, bool(metrics["higher_is_better"]))
            curves.setdefault(families.get(run.parts[-3], "other"), {}).setdefault(
                panel, {}).setdefault(run.parts[-2], []).append(pd.Series(points))
    return curves


def _plot_curve_panel(ax: Any, panel: tuple[str, str, bool],
                      by_mixer: dict[str, list[pd.Series]]) -> None:
    """One task's panel: per mixer the mean over seeds and the band from min to max; a log
    scale for a lower-is-better metric spanning more than a decade."""
    task, key, higher_is_better = panel
    values = []
    for mixer in sorted(by_mixer, key=mixer_key):
        seeds = pd.concat(by_mixer[mixer], axis=1).sort_index()
        values.append(seeds.stack())
        ax.plot(seeds.index, seeds.mean(axis=1), color=COLORS.get(mixer), lw=1.2,
                label=f"{mixer} (n={seeds.shape[1]})")
        if seeds.shape[1] > 1:
            ax.fill_between(seeds.index, seeds.min(axis=1), seeds.max(axis=1),
                            color=COLORS.get(mixer), alpha=0.2, lw=0)
    every = pd.concat(values)
    if not higher_is_better and (every > 0).all() and every.max() > 10 * every.min():
        ax.set_yscale("log")
    ax.set_title(task, fontsize=9)
    ax.set_xlabel("epoch", fontsize=8)
    ax.set_ylabel(f"{key} ({'higher' if higher_is_better else 'lower'} is better)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
