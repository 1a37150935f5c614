"""Report builder: run folders -> ``summary.csv``, ``runs.csv``, ``summary.md`` and plots.

``python -m katbench.report [results_dir] [task/mixer/seed<k> ...]`` reads every
``runs/<task>/<mixer>/seed<k>/metrics.json`` (and ``config.yaml``) and writes ``summary.csv``
(tidy: ``task,mixer,seed,metric,value,higher_is_better,paper_value``; one row per run x metric),
``runs.csv`` (one row per run: its selected test metric, epochs, cost, hardware, commit,
profile), ``summary.md`` and ``plots/``; ``--study NAME`` also writes ``studies/NAME.md``, the
table of that study's variants (:mod:`katbench.report.studies`). Every table and plot is derived
from these rows or from the arrays a run exported (plots whose arrays are absent are skipped).
Runs listed on the command line without ``metrics.json`` (failed, or never run) are shown as
missing, never as zeros. ``--publish DEST`` copies each finished run's ``metrics.json`` and
``config.yaml`` (and its evaluated epochs, for the learning curves) to ``DEST/runs/...`` and
builds the report in DEST from them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from katbench.plots import plot_arrays, plot_family_bars, plot_family_curves, plot_run
from katbench.report.compare import Paired, paired_difference
from katbench.report.runs import (
    collect,
    families_of,
    paper_studies,
    paper_values,
    parse_run_id,
    profiles_of,
    run_record,
    run_rows,
)
from katbench.report.studies import study_commands, study_markdown
from katbench.report.summary import default_commands, markdown
from katbench.report.table9 import table9
from katbench.tracking import (
    HISTORY,
    atomic_write_bytes,
    atomic_write_text,
    read_history,
    run_dir,
)

if TYPE_CHECKING:
    from katbench.studies import Study

__all__ = ["Paired", "build_report", "collect", "markdown", "paired_difference", "paper_values",
           "plot_run", "publish", "run_record", "run_rows", "table9"]

PUBLISHED = ("metrics.json", "config.yaml")
PUBLISHED_FROM = "published_from.txt"   # the results folder publish() copied the runs from
PUBLISHED_HISTORY_ROWS = 200   # a published history keeps at most this many evaluated epochs
COMMANDS = "commands.sh"   # in a results folder: the commands that made its runs, for the report


def build_report(results_dir: str | Path, expected: list[str] | None = None,
                 commands: list[str] | None = None, studies: list[str] | None = None
                 ) -> pd.DataFrame:
    """Write summary.csv, runs.csv, summary.md and plots/ under ``results_dir`` (and
    ``studies/<name>.md`` for each of ``studies``); return the tidy table.

    ``expected`` lists ``task/mixer/seed<k>`` run ids the pipeline asked for; those without
    ``metrics.json`` are reported as missing. ``commands`` are printed under "How to
    regenerate" (default: the lines of ``results_dir/commands.sh`` where the folder has one,
    else the pipeline per profile and family, or per study, then this report, with the
    publishing step when :func:`publish` recorded where the runs came from).
    """
    from katbench.studies import load_study

    results_dir = Path(results_dir)
    chosen = [load_study(name) for name in studies or []]   # an unknown name stops here
    asked = {parse_run_id(run): run for run in expected or []}
    paper = paper_values()
    table, runs = collect(results_dir, paper)
    done = set(zip(runs.task, runs.mixer, runs.seed, strict=True))
    missing = sorted(run for key, run in asked.items() if key not in done)
    atomic_write_text(results_dir / "summary.csv", table.to_csv(index=False))
    atomic_write_text(results_dir / "runs.csv", runs.to_csv(index=False))
    plots = _write_plots(results_dir, table, runs)
    if commands is None:
        commands = _regenerating_commands(results_dir, runs, chosen)
    for study in chosen:
        atomic_write_text(results_dir / "studies" / f"{study.name}.md",
                          study_markdown(study, table, runs, expected, paper_studies(),
                                         results_dir))
    tables = sorted((results_dir / "studies").glob("*.md"))
    atomic_write_text(results_dir / "summary.md",
                      markdown(table, runs, paper, commands, missing, expected, plots, tables))
    return table


def _write_plots(results_dir: Path, table: pd.DataFrame, runs: pd.DataFrame) -> list[Path]:
    """Each family's bars, learning curves and array plots under ``results_dir/plots``."""
    if table.empty:
        (results_dir / "plots").mkdir(parents=True, exist_ok=True)
        return []
    families = families_of(runs)
    return [*plot_family_bars(table, families, results_dir / "plots"),
            *plot_family_curves(results_dir, families, results_dir / "plots"),
            *plot_arrays(results_dir, results_dir / "plots", families)]


def _regenerating_commands(results_dir: Path, runs: pd.DataFrame,
                           chosen: list[Study]) -> list[str]:
    """The report's "How to regenerate" lines: ``results_dir/commands.sh`` where the folder has
    one, else each study's pipeline (for ``chosen`` studies), else the pipeline per profile and
    family, then this report, with the publishing step where :func:`publish` recorded one."""
    if (results_dir / COMMANDS).exists():
        return [line for line in (results_dir / COMMANDS).read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    if chosen:
        return [line for study in chosen
                for line in study_commands(results_dir, profiles_of(runs), study.name)]
    by_family = runs.groupby("family").task.unique() if len(runs) else {}
    commands = default_commands(results_dir, profiles_of(runs),
                                {f: list(t) for f, t in dict(by_family).items()})
    if (results_dir / PUBLISHED_FROM).exists():
        source = (results_dir / PUBLISHED_FROM).read_text().strip()
        commands.insert(-1, f"python -m katbench.report {source} --publish {results_dir}")
    return commands


def thinned_history(history: list[dict[str, float]],
                    limit: int = PUBLISHED_HISTORY_ROWS) -> list[dict[str, float]]:
    """The epochs of ``history`` that were evaluated (a ``test_*`` value; all when none was),
    at most ``limit`` of them evenly spaced, the first and last always kept."""
    evaluated = [row for row in history if any(k.startswith("test_") for k in row)] or history
    if len(evaluated) <= limit:
        return evaluated
    keep = sorted({round(i * (len(evaluated) - 1) / (limit - 1)) for i in range(limit)})
    return [evaluated[i] for i in keep]


def publish(results_dir: str | Path, dest: str | Path, expected: list[str] | None = None,
            studies: list[str] | None = None) -> pd.DataFrame:
    """Copy the finished runs' ``metrics.json`` and ``config.yaml`` (only those, plus their
    evaluated epochs from ``history.jsonl``, see :func:`thinned_history`) to
    ``dest/runs/<task>/<mixer>/seed<k>/``, then build the report in ``dest`` (with the tables
    of ``studies``); return its table.

    ``expected``: the run ids to publish (default: every finished run); those not finished are
    reported as missing. Same-named files in ``dest`` are overwritten, nothing is deleted.
    """
    results_dir, dest = Path(results_dir), Path(dest)
    if not (results_dir / "runs").is_dir():
        raise ValueError(f"{results_dir} has no runs/ folder; give the results folder the "
                         "pipeline wrote (e.g. results)")
    finished = ["/".join(p.parts[-4:-1])
                for p in sorted(results_dir.glob("runs/*/*/seed*/metrics.json"))]
    for task, mixer, seed in map(parse_run_id, finished if expected is None else expected):
        source = run_dir(results_dir, task, mixer, seed)
        if not (source / "metrics.json").exists():
            continue
        for name in PUBLISHED:
            if (source / name).exists():
                atomic_write_bytes(run_dir(dest, task, mixer, seed) / name,
                                   (source / name).read_bytes())
        history = thinned_history(read_history(source))
        if history:
            atomic_write_text(run_dir(dest, task, mixer, seed) / HISTORY,
                              "".join(json.dumps(row) + "\n" for row in history))
    atomic_write_text(dest / PUBLISHED_FROM, f"{results_dir}\n")
    return build_report(dest, expected, studies=studies)
