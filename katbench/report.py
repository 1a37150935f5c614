"""Report builder: run folders -> tidy ``summary.csv`` -> ``summary.md`` and plots.

``python -m katbench.report [results_dir] [task/mixer/seed<k> ...]`` reads every
``runs/<task>/<mixer>/seed<k>/metrics.json``, writes ``summary.csv`` (``task,mixer,seed,metric,
value,higher_is_better,paper_value``; one row per run x metric), ``summary.md`` and ``plots/``.
Every table and plot is derived from the tidy rows or from the arrays each run exported; paper
numbers come only from ``katbench/paper_results.yaml`` and are set beside ours only when the
metric is the same one (the quick profile's stand-ins, e.g. ``test_mae_micro_zinc``, never get
one). Runs listed on the command line without ``metrics.json`` (failed, or never run) are shown
as missing, never as zeros.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from katbench.plots import mixer_key, plot_arrays, plot_family_bars, plot_run

__all__ = ["build_report", "collect", "markdown", "plot_run", "run_rows", "table9"]

PAPER_RESULTS = Path(__file__).with_name("paper_results.yaml")
TASKS_DIR = Path(__file__).parents[1] / "tasks"
COLUMNS = ["task", "mixer", "seed", "metric", "value", "higher_is_better", "paper_value"]
TABLE9 = "KAT Table 9"
# Extra test metrics a run exports beside metrics.json: file -> {array: (metric, higher?)}.
EXPORTED = {"test_predictions.npz": {"accuracy": ("test_accuracy", True),
                                     "log_loss": ("test_log_loss", False)}}


def paper_values() -> dict[str, Any]:
    """``{task: {"metric", "source", "values": {mixer: value}}}`` from paper_results.yaml."""
    return yaml.safe_load(PAPER_RESULTS.read_text()) or {}


def run_rows(metrics: dict[str, Any], paper: dict[str, Any],
             exported: dict[str, tuple[float, bool]] | None = None) -> list[dict[str, Any]]:
    """Tidy rows of one run: the selected test metric, the final one, exported extra test
    metrics (``{metric: (value, higher_is_better)}``), size and cost."""
    m, hib = metrics["metric"], metrics["higher_is_better"]
    selected = metrics["best"] if metrics["selected_on"].startswith("val_") else metrics["final"]
    ref = paper.get(metrics["task"], {})
    key = f"test_{m}"
    rows = [(key, selected[key], hib, ref.get("values", {}).get(metrics["mixer"])
             if ref.get("metric") == key else None),
            (f"final_test_{m}", metrics["final"][key], hib, None),
            *[(k, v, h, None) for k, (v, h) in (exported or {}).items()],
            ("params", metrics["params"], False, None),
            ("train_time_s", metrics["train_time_s"], False, None),
            ("peak_memory_mb", metrics["peak_memory_mb"], False, None)]
    base = {"task": metrics["task"], "mixer": metrics["mixer"], "seed": metrics["seed"]}
    return [{**base, "metric": k, "value": float(v), "higher_is_better": h, "paper_value": p}
            for k, v, h, p in rows]


def _exported(run_dir: Path) -> dict[str, tuple[float, bool]]:
    out = {}
    for name, fields in EXPORTED.items():
        if (run_dir / name).exists():
            data = np.load(run_dir / name)
            out.update({metric: (float(data[k]), hib) for k, (metric, hib) in fields.items()
                        if k in data.files})
    return out


def collect(results_dir: Path) -> tuple[pd.DataFrame, dict[str, str], set[str]]:
    """All finished runs as tidy rows, ``{task: family}`` and the profiles they ran under."""
    paper, rows, families, profiles = paper_values(), [], {}, set()
    for path in sorted(results_dir.glob("runs/*/*/seed*/metrics.json")):
        metrics = json.loads(path.read_text())
        rows += run_rows(metrics, paper, _exported(path.parent))
        families[metrics["task"]] = metrics.get("family", "other")
        if (path.parent / "config.yaml").exists():
            profiles.add(str(yaml.safe_load((path.parent / "config.yaml").read_text())
                             .get("profile")))
    return pd.DataFrame(rows, columns=COLUMNS), families, profiles


def _fmt(mean: float, std: float, n: int) -> str:
    return f"{mean:.4g}" + (f" ± {std:.2g}" if n > 1 else "")


def _main_rows(table: pd.DataFrame) -> pd.DataFrame:
    return table[table.metric.str.startswith("test_") & ~table.metric.isin(
        [m for fields in EXPORTED.values() for m, _ in fields.values()])]


def _cells(rows: pd.DataFrame, mixers: list[str], expected: dict[tuple[str, str], int]
           ) -> dict[str, str]:
    """``{mixer: "mean ± std"}`` for one task's main metric; winner bold, gaps "missing"."""
    stats = rows.groupby("mixer").value.agg(["mean", "std", "count"])
    hib = bool(rows.higher_is_better.iloc[0]) if len(rows) else True
    winner = (stats["mean"].idxmax() if hib else stats["mean"].idxmin()) if len(stats) > 1 \
        else None
    task = rows.task.iloc[0] if len(rows) else None
    cells = {}
    for mixer in mixers:
        if mixer not in stats.index:
            cells[mixer] = "missing"
            continue
        s, want = stats.loc[mixer], expected.get((task, mixer), 0)
        text = _fmt(s["mean"], s["std"] if s["count"] > 1 else 0.0, int(s["count"]))
        text = f"**{text}**" if mixer == winner else text
        cells[mixer] = text + (f" ({int(s['count'])}/{want} seeds)" if want > s["count"] else "")
    return cells


def _paper_text(task: str, metric: str | None, mixers: list[str], paper: dict[str, Any]) -> str:
    ref = paper.get(task)
    if not ref:
        return "–"
    if metric is not None and ref["metric"] != metric:
        return f"n/a (paper: {ref['metric']}, {ref['source']})"
    return " / ".join(f"{ref['values'][m]:.4g}" if m in ref["values"] else "–" for m in mixers)


def _task_yaml(task: str) -> dict[str, Any]:
    path = TASKS_DIR / f"{task}.yaml"
    return yaml.safe_load(path.read_text()) if path.exists() else {}


def table9(table: pd.DataFrame, mixers: list[str], paper: dict[str, Any],
           asked: set[str] = frozenset()) -> list[str]:
    """Markdown of KAT Table 9: our mean test AUC (%) per mixer beside the paper's, where each
    table comes from, and the average over the tables every one of our mixers finished
    (``asked``: tasks the pipeline ran, so that a table whose runs all failed reads missing)."""
    from katbench.data.tabular import status

    tasks = [t for t, ref in paper.items() if ref.get("source") == TABLE9]
    auc = table[(table.metric == "test_auc") & table.task.isin(tasks)]
    means = auc.groupby(["task", "mixer"]).value.mean() * 100
    lines = [f"## {TABLE9}: TabTransformer (mlp) vs +KAT (grkan), test ROC AUC (%)", "",
             "Mean over the seeds (folds) run; **bold**: best of our mixers on average. The "
             "paper has no B-spline KAN column.", "",
             f"| table | data | {' | '.join(mixers)} | paper mlp | paper grkan |",
             "|---|---|" + "---|" * (len(mixers) + 2)]
    complete = []
    for task in tasks:
        data = _task_yaml(task).get("data") or {}
        dataset = (_task_yaml(task).get("task") or {}).get("dataset", task)
        where = status(dataset, data.get("openml_id"))
        ran = task in set(auc.task) or task in asked
        if where in ("shipped", "cached") and not ran:
            where += ", not in this profile"
        ours = [f"{means[(task, m)]:.1f}" if (task, m) in means.index else
                ("missing" if ran else "–") for m in mixers]
        if all((task, m) in means.index for m in mixers):
            complete.append(task)
        ref = paper[task]["values"]
        lines.append(f"| {task} | {where} | {' | '.join(ours)} | {100 * ref['mlp']:.1f} | "
                     f"{100 * ref['grkan']:.1f} |")
    if complete:
        avg = {m: np.mean([means[(t, m)] for t in complete]) for m in mixers}
        best = max(avg, key=avg.get)
        ours = [f"**{avg[m]:.1f}**" if m == best else f"{avg[m]:.1f}" for m in mixers]
        ref = [np.mean([100 * paper[t]["values"][m] for t in complete]) for m in ("mlp", "grkan")]
        lines.append(f"| **average of the {len(complete)} tables run** | | {' | '.join(ours)} | "
                     f"{ref[0]:.1f} | {ref[1]:.1f} |")
    full = [np.mean([100 * paper[t]["values"][m] for t in tasks]) for m in ("mlp", "grkan")]
    lines += [f"| average of all {len(tasks)} (paper) | | {' | '.join('' for _ in mixers)} | "
              f"{full[0]:.1f} | {full[1]:.1f} |", ""]
    over = ", ".join(complete) or "none (no table finished for every mixer)"
    lines.append(f"Average over: {over}; the paper's columns of that row average the same "
                 "tables. Tables marked "
                 "`needs download` run once OpenML is reachable (`docs/tabular.md`).")
    return [*lines, ""]


def markdown(table: pd.DataFrame, missing: list[str], families: dict[str, str] | None = None,
             expected: list[str] | None = None, profiles: set[str] | None = None,
             plots: list[Path] | None = None) -> str:
    """``summary.md``: overview (one row per task), KAT Table 9, per-task details, missing runs
    and the plots. Tasks of ``expected`` without any finished run still get a row."""
    paper, families = paper_values(), dict(families or {})
    want: dict[tuple[str, str], int] = {}
    for run in expected or []:
        task, mixer, _ = run.split("/")
        want[(task, mixer)] = want.get((task, mixer), 0) + 1
        families.setdefault(task, (_task_yaml(task).get("task") or {}).get("family", "other"))
    main = _main_rows(table)
    mixers = sorted({*table.mixer.unique(), *(m for _, m in want)}, key=mixer_key)
    tasks = sorted(families, key=lambda t: (families[t], t))
    n_runs = main.groupby(["task", "mixer", "seed"]).ngroups
    profile = ", ".join(sorted(profiles or [])) or "unknown"
    lines = ["# katbench summary", "",
             f"Profile **{profile}** · {n_runs} runs finished · {len(missing)} missing · "
             f"{len(tasks)} tasks in {len(set(families.values()))} families · mixers "
             f"{', '.join(mixers)}.", ""]
    if "quick" in (profiles or set()):
        lines += ["The quick profile is CPU-sized (fewer epochs, smaller models and data, one "
                  "seed): it checks that every task learns, and its numbers are not comparable "
                  "to the paper's, which are shown for orientation only.", ""]
    lines += ["Test metric, mean ± std over seeds (the validation-selected epoch where the task "
              "has a validation split, else the last). ↑/↓: higher/lower is better. **Bold**: "
              "best of our mixers. Paper: KAT (ICLR 2025) values for the same metric, "
              "`katbench/paper_results.yaml`; `n/a` where our metric is a stand-in.", "",
              "## Overview", "",
              f"| family | task | metric | {' | '.join(mixers)} | paper ({' / '.join(mixers)}) |",
              "|---|---|---|" + "---|" * (len(mixers) + 1)]
    for task in tasks:
        rows = main[main.task == task]
        metric = rows.metric.iloc[0] if len(rows) else None
        arrow = ("↑" if rows.higher_is_better.iloc[0] else "↓") if len(rows) else ""
        cells = _cells(rows, mixers, want) if len(rows) else {m: "missing" for m in mixers}
        lines.append(f"| {families[task]} | {task} | {metric or '–'} {arrow} | "
                     f"{' | '.join(cells[m] for m in mixers)} | "
                     f"{_paper_text(task, metric, mixers, paper)} |")
    lines.append("")
    if any(families.get(t) == "tabular" for t in tasks):
        lines += table9(table, mixers, paper, {t for t, _ in want})
    lines += ["## Per task", "",
              "Cost and extra test metrics per mixer (means over seeds); `final` is the last "
              "epoch's test metric.", ""]
    for task in tasks:
        sub = table[table.task == task]
        if sub.empty:
            continue
        metric = _main_rows(sub).metric.iloc[0]
        extra = [m for m in sub.metric.unique() if m.startswith("test_") and m != metric]
        means = sub.pivot_table(index="mixer", columns="metric", values="value", aggfunc="mean")
        head = [metric, f"final {metric}", *extra, "params", "train time (s)", "peak MB"]
        lines += [f"### {task}", "", f"| mixer | {' | '.join(head)} |",
                  "|---|" + "---|" * len(head)]
        for mixer in mixers:
            if mixer not in means.index:
                lines.append(f"| {mixer} | " + " | ".join(["missing"] * len(head)) + " |")
                continue
            r = means.loc[mixer]
            vals = [f"{r[k]:.4g}" for k in (metric, f"final_{metric}", *extra)]
            vals += [f"{int(r['params']):,}", f"{r['train_time_s']:.1f}",
                     f"{r['peak_memory_mb']:.0f}"]
            lines.append(f"| {mixer} | {' | '.join(vals)} |")
        lines.append("")
    if missing:
        lines += ["## Missing runs", "",
                  "Asked for but without `metrics.json` (the job failed or never ran; see the "
                  "Snakemake log, re-run `snakemake --cores all` to retry them):", "",
                  *[f"- {m}" for m in missing], ""]
    if plots:
        lines += ["## Plots", "", *[f"![{p.stem}](plots/{p.name})" for p in plots], ""]
    return "\n".join(lines)


def build_report(results_dir: str | Path, expected: list[str] | None = None) -> pd.DataFrame:
    """Write summary.csv, summary.md and plots/ under ``results_dir``; return the tidy table.

    ``expected`` lists ``task/mixer/seed<k>`` run ids the pipeline asked for; those without
    ``metrics.json`` are reported as missing.
    """
    from katbench.tracking import atomic_write_text

    results_dir = Path(results_dir)
    table, families, profiles = collect(results_dir)
    done = {f"{r.task}/{r.mixer}/seed{r.seed}" for r in table.itertuples()}
    missing = sorted(set(expected or []) - done)
    atomic_write_text(results_dir / "summary.csv", table.to_csv(index=False))
    plots: list[Path] = []
    if not table.empty:
        plots += plot_family_bars(table, families, results_dir / "plots")
        plots += plot_arrays(results_dir, results_dir / "plots", families)
    else:
        (results_dir / "plots").mkdir(parents=True, exist_ok=True)
    atomic_write_text(results_dir / "summary.md",
                      markdown(table, missing, families, expected, profiles, plots))
    return table


if __name__ == "__main__":
    build_report(sys.argv[1] if len(sys.argv) > 1 else "results", sys.argv[2:] or None)
