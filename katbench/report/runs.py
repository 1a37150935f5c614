"""Run folders -> tidy rows (``summary.csv``) and one record per run (``runs.csv``).

Paper numbers come only from ``katbench/paper_results.yaml`` and are set beside ours only when
the metric is the same one (the quick profile's stand-ins, e.g. ``test_mae_micro_zinc``, never
get one).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

PAPER_RESULTS = Path(__file__).parents[1] / "paper_results.yaml"
TASKS_DIR = Path(__file__).parents[2] / "tasks"
COLUMNS = ["task", "mixer", "seed", "metric", "value", "higher_is_better", "paper_value"]
RUN_COLUMNS = ["task", "family", "mixer", "seed", "metric", "value", "epochs", "max_epochs",
               "stopped_early", "train_time_s", "wall_time_s", "hardware", "device", "commit",
               "params", "profile"]
UNKNOWN = "unknown"
# Extra test metrics a run exports beside metrics.json: file -> {array: (metric, higher?)}.
EXPORTED = {"test_predictions.npz": {"accuracy": ("test_accuracy", True),
                                     "log_loss": ("test_log_loss", False),
                                     "rmse": ("test_rmse", False), "mae": ("test_mae", False)}}
RUN_ID = re.compile(r"([^/]+)/([^/]+)/seed(\d+)")


STUDIES = "studies"   # paper_results.yaml's section of the paper's ablation tables


def paper_values() -> dict[str, Any]:
    """``{task: {"metric", "source", "values": {mixer: value}, ...}}`` from paper_results.yaml
    (optional per entry: ``spread``, ``tolerance``, ``compare``, ``difference``, ``epoch``)."""
    doc = yaml.safe_load(PAPER_RESULTS.read_text()) or {}
    return {task: entry for task, entry in doc.items() if task != STUDIES}


def paper_studies() -> dict[str, Any]:
    """``{study: {"source", "metric", "values": {variant: value}, "note"?}}``: the paper's
    ablation tables (ImageNet-1k, KAT-T) from paper_results.yaml's ``studies`` section."""
    return (yaml.safe_load(PAPER_RESULTS.read_text()) or {}).get(STUDIES) or {}


def parse_run_id(run: str) -> tuple[str, str, int]:
    """``"task/mixer/seed<k>"`` -> ``(task, mixer, k)``; anything else is a ``ValueError``."""
    match = RUN_ID.fullmatch(run)
    if match is None:
        raise ValueError(f"run id {run!r} is not task/mixer/seed<k> (e.g. zinc/grkan/seed0)")
    return match[1], match[2], int(match[3])


def expected_counts(expected: list[str] | None, labels: list[str] | None = None
                    ) -> dict[tuple[str, str], int]:
    """Runs asked for per (task, mixer or variant label) among the ``expected`` run ids, only
    those of ``labels`` where given."""
    want: dict[tuple[str, str], int] = {}
    for run in expected or []:
        task, label, _ = parse_run_id(run)
        if labels is None or label in labels:
            want[(task, label)] = want.get((task, label), 0) + 1
    return want


def task_yaml(task: str) -> dict[str, Any]:
    """The task's ``tasks/<task>.yaml``, or ``{}`` when there is none."""
    path = TASKS_DIR / f"{task}.yaml"
    return yaml.safe_load(path.read_text()) if path.exists() else {}


def _paper_reports_last_epoch(task: str, paper: dict[str, Any]) -> bool:
    """Whether the paper's entry for ``task`` says ``epoch: last`` (its protocol reports the
    last epoch's test metric)."""
    return paper.get(task, {}).get("epoch") == "last"


def selected(metrics: dict[str, Any], paper: dict[str, Any]) -> tuple[str, float]:
    """The run's test metric name and its value at the selected epoch: the last where the
    paper reports the last epoch, else the best on validation when ``selected_on`` is a
    validation metric, else the last."""
    key = f"test_{metrics['metric']}"
    last = (_paper_reports_last_epoch(metrics["task"], paper)
            or not metrics["selected_on"].startswith("val_"))
    return key, float((metrics["final"] if last else metrics["best"])[key])


def run_rows(metrics: dict[str, Any], paper: dict[str, Any],
             exported: dict[str, tuple[float, bool]] | None = None) -> list[dict[str, Any]]:
    """Tidy rows of one run: the selected test metric; the final one; where the paper reports
    the last epoch of a run that selects on validation, the test metric at the best validation
    epoch too (``at_best_val_<metric>``: how much that choice moves the number); exported extra
    test metrics (``{metric: (value, higher_is_better)}``; one named like the selected metric
    is left out); size and cost."""
    hib = metrics["higher_is_better"]
    key, value = selected(metrics, paper)
    ref = paper.get(metrics["task"], {})
    at_best_val = []
    if (_paper_reports_last_epoch(metrics["task"], paper)
            and metrics["selected_on"].startswith("val_")):
        at_best_val = [(f"at_best_val_{key}", metrics["best"][key], hib, None)]
    rows = [(key, value, hib, ref.get("values", {}).get(metrics["mixer"])
             if ref.get("metric") == key else None),
            (f"final_{key}", metrics["final"][key], hib, None),
            *at_best_val,
            *[(k, v, h, None) for k, (v, h) in (exported or {}).items() if k != key],
            ("params", metrics["params"], False, None),
            ("train_time_s", metrics["train_time_s"], False, None),
            ("peak_memory_mb", metrics["peak_memory_mb"], False, None)]
    base = {"task": metrics["task"], "mixer": metrics["mixer"], "seed": metrics["seed"]}
    return [{**base, "metric": k, "value": float(v), "higher_is_better": h, "paper_value": p}
            for k, v, h, p in rows]


def run_record(metrics: dict[str, Any], config: dict[str, Any], paper: dict[str, Any]
               ) -> dict[str, Any]:
    """One ``runs.csv`` row: the selected test metric, epochs, cost and provenance. Fields that
    older runs did not record are ``unknown`` (text) or empty (numbers)."""
    key, value = selected(metrics, paper)
    return {"task": metrics["task"], "family": metrics.get("family", "other"),
            "mixer": metrics["mixer"], "seed": metrics["seed"], "metric": key, "value": value,
            "epochs": metrics.get("epochs_done"),
            "max_epochs": (config.get("trainer") or {}).get("epochs"),
            "stopped_early": metrics.get("stopped_early"),
            "train_time_s": metrics["train_time_s"], "wall_time_s": metrics.get("wall_time_s"),
            "hardware": metrics.get("hardware", UNKNOWN), "device": metrics.get("device", UNKNOWN),
            "commit": metrics.get("git_commit", UNKNOWN), "params": metrics["params"],
            "profile": str(config.get("profile", UNKNOWN))}


def _exported(run_dir: Path) -> dict[str, tuple[float, bool]]:
    out = {}
    for name, fields in EXPORTED.items():
        if (run_dir / name).exists():
            data = np.load(run_dir / name)
            out.update({metric: (float(data[k]), hib) for k, (metric, hib) in fields.items()
                        if k in data.files})
    return out


def collect(results_dir: Path, paper: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every finished run under ``results_dir/runs``: the tidy table and the runs table."""
    rows, records = [], []
    for path in sorted(results_dir.glob("runs/*/*/seed*/metrics.json")):
        metrics = json.loads(path.read_text())
        config_path = path.with_name("config.yaml")
        config = (yaml.safe_load(config_path.read_text()) or {}) if config_path.exists() else {}
        rows += run_rows(metrics, paper, _exported(path.parent))
        records.append(run_record(metrics, config, paper))
    # Integers stay integers beside the empty cells of runs that did not record them.
    runs = pd.DataFrame(records, columns=RUN_COLUMNS).astype(
        {"epochs": "Int64", "max_epochs": "Int64"})
    return (pd.DataFrame(rows, columns=COLUMNS),
            runs.sort_values(["task", "mixer", "seed"], ignore_index=True))


def families_of(runs: pd.DataFrame, asked: Iterable[str] = ()) -> dict[str, str]:
    """``{task: family}`` of the runs table, and of each ``asked`` task without a run from its
    task file (``other`` without one)."""
    families = dict(zip(runs.task, runs.family, strict=True))
    for task in asked:
        families.setdefault(task, (task_yaml(task).get("task") or {}).get("family", "other"))
    return families


def profiles_of(runs: pd.DataFrame) -> set[str]:
    """The profiles the runs ran under (those with a known one)."""
    return set(runs.profile) - {UNKNOWN}


def main_rows(table: pd.DataFrame) -> pd.DataFrame:
    """Each run's selected test metric (one row per run) from the tidy table: the ``test_``
    metric that also has a ``final_`` row (exported extra metrics have none)."""
    run = ["task", "mixer", "seed"]
    finals = table[table.metric.str.startswith("final_test_")][run + ["metric"]]
    selected = finals.assign(metric=finals.metric.str.removeprefix("final_"))
    return table.merge(selected, on=[*run, "metric"])
