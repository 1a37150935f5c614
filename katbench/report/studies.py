"""One table per study (``<results>/studies/<name>.md``): each variant's test metric per task,
the paper's ImageNet figure beside it where the study mirrors a paper ablation, and the
variants' mean rank per family."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from katbench.report.runs import UNKNOWN, expected_counts, families_of, main_rows
from katbench.report.summary import metric_cells, profile_notes
from katbench.studies import Study, parse_variant


def study_commands(results_dir: str | Path, profiles: set[str], study: str) -> list[str]:
    """The pipeline command of ``study`` for each profile, then its report."""
    runs = [f"snakemake --cores all --config study={study} profile={p} results_dir={results_dir}"
            + (" --resources gpu=<GPUs>" if p != "quick" else "")
            for p in sorted(profiles) or ["<profile>"]]
    return [*runs, f"python -m katbench.report {results_dir} --study {study}"]


def _paper_lines(entry: dict[str, Any], labels: list[str]) -> tuple[list[str], dict[str, str]]:
    """The explanation of the paper's column and its cell per variant label."""
    values = {parse_variant(spec).label: value for spec, value in entry["values"].items()}
    lines = [f"**Paper**: {entry['source']}, {entry['metric']} (first row). The task differs: "
             "ImageNet-1k with KAT-T trained 300 epochs, not one of the tasks below, so the "
             "paper's figure is the same variant on another task and model; compare the order "
             "of the variants, not the values.", ""]
    if entry.get("note"):
        lines += [f"Paper rows: {entry['note']}", ""]
    return lines, {lab: f"{values[lab]:.4g}" if lab in values else "–" for lab in labels}


def mean_ranks(main: pd.DataFrame, labels: list[str], families: dict[str, str]
               ) -> list[tuple[str, int, dict[str, float]]]:
    """``(family, tasks, {label: mean rank})`` per family and for ``all``: each task ranks the
    variants' means (1 = best, ties share the mean rank) and only tasks that every variant
    finished count."""
    ranks: dict[str, pd.Series] = {}
    for task, rows in main.groupby("task"):
        means = rows.groupby("mixer").value.mean().reindex(labels)
        if means.notna().all():
            ranks[task] = means.rank(ascending=not bool(rows.higher_is_better.iloc[0]))
    out = []
    for family in [*sorted({families[t] for t in ranks}), "all"]:
        tasks = [t for t in ranks if family in ("all", families[t])]
        if tasks:
            mean = pd.concat([ranks[t] for t in tasks], axis=1).mean(axis=1)
            out.append((family, len(tasks), mean.to_dict()))
    return out


def study_markdown(study: Study, table: pd.DataFrame, runs: pd.DataFrame,
                   expected: list[str] | None, paper: dict[str, Any],
                   results_dir: str | Path) -> str:
    """``studies/<name>.md``: one row per task (the study's tasks that were asked for or ran),
    one column per variant in the study's order, mean ± sample std (n) of the task's test
    metric; the paper's row first where ``paper`` (paper_results.yaml's ``studies``) has the
    study; then mean ranks per family, cost and how to regenerate."""
    labels = [v.label for v in study.variants]
    ran = runs[runs.mixer.isin(labels)]
    want = expected_counts(expected, labels)
    families = families_of(ran, (t for t, _ in want))
    main = main_rows(table[table.mixer.isin(labels)])
    profiles = set(ran.profile) - {UNKNOWN}
    hardware = ", ".join(sorted(set(ran.hardware.astype(str)) - {UNKNOWN})) or UNKNOWN
    lines = [f"# Study `{study.name}`", "", study.description, "",
             f"Profile **{', '.join(sorted(profiles)) or UNKNOWN}** · hardware: {hardware} · "
             f"{len(ran)} of {sum(want.values()) or len(ran)} runs finished · "
             f"{len(families)} tasks · {len(labels)} variants.", "", *profile_notes(profiles),
             "Test metric per task and variant: mean ± sample std over seeds and the number of "
             "seeds n (the validation-selected epoch where the task has a validation split). "
             "↑/↓: higher/lower is better; **bold**: the task's best variant. A variant "
             "`mixer[key=value]` runs as `runs/<task>/<label>/seed<k>/` with label "
             "`mixer-key=value`; settings it does not give come from the task file "
             "(docs/studies.md).", "",
             *_variant_table(main, labels, want, families, paper.get(study.name)),
             *_rank_lines(main, ran, labels, families),
             "", "## How to regenerate", "", "```bash",
             *study_commands(results_dir, profiles, study.name), "```", ""]
    return "\n".join(lines)


def _variant_table(main: pd.DataFrame, labels: list[str], want: dict[tuple[str, str], int],
                   families: dict[str, str], paper_entry: dict[str, Any] | None) -> list[str]:
    """The table of tasks x variants, the paper's row first where it has the study."""
    head = f"| family | task | metric | {' | '.join(labels)} |"
    rule = "|---|---|---|" + "---|" * len(labels)
    if paper_entry:
        notes, cells = _paper_lines(paper_entry, labels)
        lines = [*notes, head, rule,
                 f"| paper | ImageNet-1k ({paper_entry['source']}) | top-1 % ↑ | "
                 f"{' | '.join(cells[lab] for lab in labels)} |"]
    else:
        lines = [head, rule]
    for task in sorted(families, key=lambda t: (families[t], t)):
        rows = main[main.task == task]
        cells = metric_cells(rows, labels, want) if len(rows) else dict.fromkeys(labels,
                                                                               "missing")
        metric = (f"{rows.metric.iloc[0]} {'↑' if rows.higher_is_better.iloc[0] else '↓'}"
                  if len(rows) else "–")
        lines.append(f"| {families[task]} | {task} | {metric} | "
                     f"{' | '.join(cells[lab] for lab in labels)} |")
    return lines


def _rank_lines(main: pd.DataFrame, ran: pd.DataFrame, labels: list[str],
                families: dict[str, str]) -> list[str]:
    """Mean rank of each variant per family and its mean train time; none without ranks."""
    ranks = mean_ranks(main, labels, families)
    if not ranks:
        return []
    lines = ["", "## Mean rank per family", "",
             "Each task ranks the variants by their mean (1 = best; ties share the mean "
             "rank); the ranks are averaged over the family's tasks that every variant "
             "finished. Train time: mean seconds per run over all tasks (one process per "
             "job, cores shared; `python -m katbench.bench block` times the mixers side by "
             "side).", "", f"| family | tasks | {' | '.join(labels)} |",
             "|---|---|" + "---|" * len(labels)]
    for family, n, mean in ranks:
        best = min(mean.values())
        lines.append(f"| {family} | {n} | " + " | ".join(
            f"**{mean[lab]:.2f}**" if mean[lab] == best else f"{mean[lab]:.2f}"
            for lab in labels) + " |")
    seconds = ran.groupby("mixer").train_time_s.mean()
    lines.append("| train time (s/run) | | " + " | ".join(
        f"{seconds[lab]:.1f}" if lab in seconds.index else "–" for lab in labels) + " |")
    return lines
