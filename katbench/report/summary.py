"""``summary.md``: overview, comparisons, KAT Table 9, per-task details, cost, missing runs,
how to regenerate, plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from katbench.plots import mixer_key
from katbench.report.compare import against_baseline, paper_differences
from katbench.report.runs import (
    UNKNOWN,
    expected_counts,
    families_of,
    main_rows,
    parse_run_id,
    profiles_of,
)
from katbench.report.table9 import TABLE9, table9


def _fmt(mean: float, std: float, n: int) -> str:
    return f"{mean:.4g}" + (f" ± {std:.2g}" if n > 1 else "")


def metric_cells(rows: pd.DataFrame, mixers: list[str], expected: dict[tuple[str, str], int]
           ) -> dict[str, str]:
    """``{mixer: "mean ± std (n=k)"}`` for one task's main metric (sample std, ddof = 1);
    winner bold, fewer seeds than asked ``(n=k of K)``, gaps "missing"."""
    stats = rows.groupby("mixer").value.agg(["mean", "std", "count"])
    hib = bool(rows.higher_is_better.iloc[0])
    winner = (stats["mean"].idxmax() if hib else stats["mean"].idxmin()) if len(stats) > 1 \
        else None
    task = rows.task.iloc[0]
    cells = {}
    for mixer in mixers:
        if mixer not in stats.index:
            cells[mixer] = "missing"
            continue
        s, want = stats.loc[mixer], expected.get((task, mixer), 0)
        n = int(s["count"])
        text = _fmt(s["mean"], s["std"] if n > 1 else 0.0, n)
        text = f"**{text}**" if mixer == winner else text
        cells[mixer] = text + (f" (n={n} of {want})" if want > n else f" (n={n})")
    return cells


def _paper_text(task: str, metric: str | None, mixers: list[str], paper: dict[str, Any]) -> str:
    ref = paper.get(task)
    if not ref:
        return "–"
    if metric is not None and ref["metric"] != metric:
        return f"n/a (paper: {ref['metric']}, {ref['source']})"
    if "values" not in ref:
        return f"best first: {', '.join(ref['ranking'])}"
    return " / ".join(f"{ref['values'][m]:.4g}" if m in ref["values"] else "–" for m in mixers)


def _last_epoch_note(tasks: list[str], paper: dict[str, Any]) -> str:
    """Which tasks report their last epoch because the paper's protocol does."""
    last = [t for t in tasks if paper.get(t, {}).get("epoch") == "last"]
    return (f"; the last for {', '.join(last)}, whose benchmark reports the last epoch"
            if last else "")


def profile_notes(profiles: set[str]) -> list[str]:
    lines = []
    if "quick" in profiles:
        lines += ["The quick profile is CPU-sized (fewer epochs, smaller models and data, one "
                  "seed): it checks that every task learns, and its numbers are not comparable "
                  "to the paper's, which are shown for orientation only.", ""]
    if "paper" in profiles:
        lines += ["Paper profile: the paper's model sizes, schedules and seeds. Its numbers are "
                  "comparable to the paper's where the data is the paper's; stand-in metrics "
                  "are never set beside the paper's.", ""]
    return lines


def _per_task(table: pd.DataFrame, tasks: list[str], mixers: list[str]) -> list[str]:
    lines = ["## Per task", "",
             "Cost and extra test metrics per mixer (means over seeds); `final` is the last "
             "epoch's test metric; `at best val`, where the task reports the last epoch, the "
             "test metric at the epoch of the best validation metric.", ""]
    for task in tasks:
        sub = table[table.task == task]
        if sub.empty:
            continue
        metric = main_rows(sub).metric.iloc[0]
        at_best_val = [f"at_best_val_{metric}"] if f"at_best_val_{metric}" in set(sub.metric) \
            else []
        extra = [m for m in sub.metric.unique() if m.startswith("test_") and m != metric]
        means = sub.pivot_table(index="mixer", columns="metric", values="value", aggfunc="mean")
        head = [metric, f"final {metric}", *(f"{metric} at best val" for _ in at_best_val),
                *extra, "params", "train time (s)", "peak MB"]
        lines += [f"### {task}", "", f"| mixer | {' | '.join(head)} |",
                  "|---|" + "---|" * len(head)]
        for mixer in mixers:
            if mixer not in means.index:
                lines.append(f"| {mixer} | " + " | ".join(["missing"] * len(head)) + " |")
                continue
            r = means.loc[mixer]
            vals = [f"{r[k]:.4g}" for k in (metric, f"final_{metric}", *at_best_val, *extra)]
            vals += [f"{int(r['params']):,}", f"{r['train_time_s']:.1f}",
                     f"{r['peak_memory_mb']:.0f}"]
            lines.append(f"| {mixer} | {' | '.join(vals)} |")
        lines.append("")
    return lines


def _hours(seconds: pd.Series) -> str:
    unknown = int(seconds.isna().sum())
    return f"{seconds.sum() / 3600:.2f}" + (f" ({unknown} runs unknown)" if unknown else "")


def cost_table(runs: pd.DataFrame) -> list[str]:
    """Markdown cost table per family (and all): runs, train and wall hours, GPU-process-hours,
    hardware."""
    lines = ["## Cost", "",
             "Hours summed over runs. GPU-process-hours: the wall time of every run on a CUDA "
             "device; runs that shared one GPU each count their own wall time, so this is "
             "process time, not the time the GPUs were occupied.", "",
             "| family | runs | train hours | wall hours | GPU-process-hours | hardware |",
             "|---|---|---|---|---|---|"]
    groups = [*runs.groupby("family"), ("**all**", runs)]
    for family, rows in groups:
        gpu = rows[rows.device.astype(str).str.startswith("cuda")]
        hardware = ", ".join(sorted(set(rows.hardware.astype(str)))) or UNKNOWN
        lines.append(f"| {family} | {len(rows)} | {_hours(rows.train_time_s)} | "
                     f"{_hours(rows.wall_time_s)} | {_hours(gpu.wall_time_s)} | {hardware} |")
    return [*lines, ""]


def missing_lines(missing: list[str]) -> list[str]:
    """Missing runs grouped: one line per task and mixer, ``- task/mixer: seeds 0, 1, 2``."""
    seeds: dict[tuple[str, str], list[int]] = {}
    for run in missing:
        task, mixer, seed = parse_run_id(run)
        seeds.setdefault((task, mixer), []).append(seed)
    return [f"- {task}/{mixer}: seed{'s' if len(ks) > 1 else ''} "
            f"{', '.join(map(str, sorted(ks)))}" for (task, mixer), ks in sorted(seeds.items())]


def default_commands(results_dir: str | Path, profiles: set[str],
                     tasks_by_family: dict[str, list[str]] | None = None) -> list[str]:
    """The pipeline for each profile, one command per family naming the tasks that ran (so that
    each family's rows can be regenerated alone), then the report of ``results_dir``."""
    groups = sorted((tasks_by_family or {}).items()) or [("", [])]
    runs = [f"snakemake --cores all --config profile={p}"
            + (f" tasks={','.join(sorted(tasks))}" if tasks else "")
            + (" --resources gpu=<GPUs>" if p != "quick" else "")
            for p in sorted(profiles) or ["<profile>"] for _, tasks in groups]
    return [*runs, f"python -m katbench.report {results_dir}"]


def markdown(table: pd.DataFrame, runs: pd.DataFrame, paper: dict[str, Any], commands: list[str],
             missing: list[str] | None = None, expected: list[str] | None = None,
             plots: list[Path] | None = None, studies: list[Path] | None = None) -> str:
    """``summary.md`` from the tidy table and the runs table. Tasks of ``expected``
    (``task/mixer/seed<k>`` ids) without any finished run still get a row; ``studies`` (the
    folder's ``studies/*.md``) are linked."""
    want = expected_counts(expected)
    families, profiles = families_of(runs, (t for t, _ in want)), profiles_of(runs)
    main = main_rows(table)
    mixers = sorted({*table.mixer.unique(), *(m for _, m in want)}, key=mixer_key)
    tasks = sorted(families, key=lambda t: (families[t], t))
    missing = missing or []
    lines = [*_header(runs, tasks, families, profiles, mixers, len(missing), paper),
             *_overview(main, tasks, families, mixers, want, paper), "",
             *against_baseline(main, families), *paper_differences(main, paper, profiles)]
    if any(paper.get(t, {}).get("source") == TABLE9 for t in tasks):
        lines += table9(table, mixers, paper, {t for t, _ in want})
    if studies:
        lines += ["## Studies", "", "One table per study (docs/studies.md):", "",
                  *[f"- [{p.stem}](studies/{p.name})" for p in studies], ""]
    lines += _per_task(table, tasks, mixers)
    if not runs.empty:
        lines += cost_table(runs)
    if missing:
        lines += ["## Missing runs", "",
                  "Asked for but without `metrics.json` (the job failed or never ran; see the "
                  "Snakemake log, re-run `snakemake --cores all` to retry them):", "",
                  *missing_lines(missing), ""]
    lines += ["## How to regenerate", "", "```bash", *commands, "```", ""]
    if plots:
        lines += ["## Plots", "", *[f"![{p.stem}](plots/{p.name})" for p in plots], ""]
    return "\n".join(lines)


def _with_paper(tasks: list[str], paper: dict[str, Any]) -> bool:
    """Whether any task has a paper number (your own data has none: no paper column then)."""
    return any(t in paper for t in tasks)


def _header(runs: pd.DataFrame, tasks: list[str], families: dict[str, str],
            profiles: set[str], mixers: list[str], n_missing: int,
            paper: dict[str, Any]) -> list[str]:
    """The title, the counts line, the profile notes and how to read the tables."""
    return ["# katbench summary", "",
            f"Profile **{', '.join(sorted(profiles)) or UNKNOWN}** · {len(runs)} runs finished "
            f"· {n_missing} missing · {len(tasks)} tasks in {len(set(families.values()))} "
            f"families · mixers {', '.join(mixers)}.", "", *profile_notes(profiles),
            "Test metric, mean ± sample std over seeds and the number of seeds n (the "
            "validation-selected epoch where the task has a validation split, else the last"
            + _last_epoch_note(tasks, paper) + "). "
            "↑/↓: higher/lower is better. **Bold**: best of our mixers."
            + (" Paper: KAT (ICLR 2025) values for the same metric, "
               "`katbench/paper_results.yaml`; `n/a` where our metric is a stand-in, `–` where "
               "the paper has no such task (e.g. your own data)."
               if _with_paper(tasks, paper) else ""), ""]


def _overview(main: pd.DataFrame, tasks: list[str], families: dict[str, str],
              mixers: list[str], want: dict[tuple[str, str], int],
              paper: dict[str, Any]) -> list[str]:
    """One row per task: each mixer's cell, then the paper's values where it has the task."""
    with_paper = _with_paper(tasks, paper)
    paper_head = f" paper ({' / '.join(mixers)}) |" if with_paper else ""
    lines = ["## Overview", "",
             f"| family | task | metric | {' | '.join(mixers)} |{paper_head}",
             "|---|---|---|" + "---|" * (len(mixers) + with_paper)]
    for task in tasks:
        rows = main[main.task == task]
        metric = rows.metric.iloc[0] if len(rows) else None
        arrow = ("↑" if rows.higher_is_better.iloc[0] else "↓") if len(rows) else ""
        cells = metric_cells(rows, mixers, want) if len(rows) else {m: "missing" for m in mixers}
        lines.append(f"| {families[task]} | {task} | {metric or '–'} {arrow} | "
                     f"{' | '.join(cells[m] for m in mixers)} |"
                     + (f" {_paper_text(task, metric, mixers, paper)} |" if with_paper else ""))
    return lines
