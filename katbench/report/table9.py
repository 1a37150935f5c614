"""KAT Table 9 (TabTransformer vs +KAT on 15 binary tables) beside our tabular runs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from katbench.report.runs import task_yaml

TABLE9 = "KAT Table 9"


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
        data = task_yaml(task).get("data") or {}
        dataset = (task_yaml(task).get("task") or {}).get("dataset", task)
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
