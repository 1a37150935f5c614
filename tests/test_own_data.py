"""Your own data through the CLI and the pipeline: every bad input is one line naming the fix,
exit 2, with the results folder untouched; the pipeline sweeps the mixers on a user's file into
the same report (no paper column) and MLflow runs; the README shows the three commands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from katbench.run import main

ROOT = Path(__file__).parents[1]
QUIET = ["tracking.enabled=false", "trainer.progress=none"]


def _table(path: Path, n: int = 200) -> Path:
    rng = np.random.default_rng(0)
    x = rng.normal(size=n)
    pd.DataFrame({"x": x, "colour": rng.choice(["red", "blue"], n), "same": 1,
                  "label": np.where(x > 0.3, "yes", "no")}).to_csv(path, index=False)
    return path


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def _bad_inputs(tmp: Path) -> dict[str, tuple[list[str], str]]:
    """name -> (command line, expected text of the one-line error)."""
    from PIL import Image

    table = _table(tmp / "table.csv")
    mols = tmp / "mols.csv"
    pd.DataFrame({"smiles": ["C1CC", "xyz", "CCO"], "y": [1.0, 2.0, 3.0]}).to_csv(mols,
                                                                                index=False)
    (tmp / "empty").mkdir()
    (tmp / "one/cat").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp / "one/cat/a.png")
    for name in ("cat", "dog"):
        (tmp / f"mixed/{name}").mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp / f"mixed/{name}/a.png")
        (tmp / f"broken/{name}").mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp / f"broken/{name}/a.png")
    (tmp / "mixed/dog/notes.txt").write_text("not an image")
    (tmp / "broken/cat/b.png").write_text("not a png either")
    tab = ["task=tab_csv", "mixer=mlp"]
    mol = ["task=mol_csv", "mixer=mlp", "data.target=y"]
    img = ["task=images", "mixer=mlp"]
    return {
        "missing file": ([*tab, f"data.path={tmp}/nope.csv", "data.target=label"],
                         f"data.path={tmp}/nope.csv does not exist; pass a CSV or Parquet file"),
        "no path": ([*tab], "task tab_csv needs data.path=<CSV or Parquet file> and "
                            "data.target=<column>"),
        "missing column": ([*tab, f"data.path={table}", "data.target=lable"],
                           "target column 'lable' is not in the table; columns: x, colour, "
                           "same, label (set data.target)"),
        "one value": ([*tab, f"data.path={table}", "data.target=same"],
                      "target column 'same' has a single value [1]: nothing to learn; set "
                      "data.target to a column with at least two values"),
        "unreadable SMILES": ([*mol, f"data.path={mols}"],
                              "2 of 3 molecules of " + str(mols) + " cannot be used (row 1: "
                              "unparsable SMILES 'C1CC'; row 2: unparsable SMILES 'xyz'); fix "
                              "or remove those rows, or raise data.max_invalid_fraction"),
        "missing SMILES column": ([*mol, f"data.path={mols}", "data.smiles=smi"],
                                  "data.smiles='smi' is not a column of"),
        "empty folder": ([*img, f"data.root={tmp}/empty"],
                         f"{tmp}/empty has no class folders (it is empty); put each class's "
                         f"images in {tmp}/empty/<class>/"),
        "one class": ([*img, f"data.root={tmp}/one"],
                      f"{tmp}/one has one class folder (cat); classification needs at least "
                      f"two: add {tmp}/one/<another class>/ with its images"),
        "non-image file": ([*img, f"data.root={tmp}/mixed"],
                           f"1 files in {tmp}/mixed are not images (dog/notes.txt); remove them"),
        "unreadable image": ([*img, f"data.root={tmp}/broken"],
                             f"1 files in {tmp}/broken cannot be read as images (cat/b.png); "
                             "replace or remove them"),
    }


def test_bad_own_data_is_one_line_exit_2_and_touches_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KATBENCH_CACHE", str(tmp_path / "cache"))
    results = tmp_path / "results"
    for task in ("tab_csv", "mol_csv", "images"):     # an interrupted run of each task
        run = results / "runs" / task / "mlp" / "seed0"
        run.mkdir(parents=True)
        (run / "checkpoint.pt").write_bytes(b"an earlier run's checkpoint")
        (run / "config.yaml").write_text("seed: 0\n")
    before = _snapshot(results)
    for name, (args, message) in _bad_inputs(tmp_path).items():
        assert main([*args, f"results_dir={results}", *QUIET]) == 2, name
        err = capsys.readouterr().err
        errors = [line for line in err.splitlines() if line.startswith("katbench.run: error:")]
        assert len(errors) == 1 and message in errors[0], (name, err)
        assert "Traceback" not in err
        assert _snapshot(results) == before, name


def test_pipeline_sweeps_mixers_on_a_users_file(tmp_path):
    table = _table(tmp_path / "mine.csv")
    results = tmp_path / "results"
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("snakemake")), "-s", str(ROOT / "Snakefile"), "-d",
         str(tmp_path), "--cores", "2", "--config", "tasks=tab_csv", "mixers=mlp,grkan",
         f"results_dir={results}",
         f"overrides=data.path={table} data.target=label data.drop=[same] trainer.epochs=3"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    md = (results / "summary.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| family | task |"))
    assert header == "| family | task | metric | mlp | grkan |"       # no paper column
    row = next(line for line in md.splitlines() if line.startswith("| tabular | tab_csv |"))
    assert row.count("(n=1)") == 2 and "test_auc ↑" in row
    assert "KAT Table 9" not in md and "### tab_csv" in md
    csv = pd.read_csv(results / "summary.csv")
    assert set(csv.mixer) == {"mlp", "grkan"} and csv.paper_value.isna().all()
    assert {"test_auc", "test_accuracy", "test_log_loss"} <= set(csv.metric)
    for mixer in ("mlp", "grkan"):
        run = results / "runs/tab_csv" / mixer / "seed0"
        assert json.loads((run / "metrics.json").read_text())["mlflow_run_id"]
        assert (run / "mlflow_run_id").read_text().strip()
    assert (results / "mlflow.db").exists()


@pytest.mark.parametrize("command", [
    "python -m katbench.run task=tab_csv data.path=",
    "python -m katbench.run task=mol_csv data.path=",
    "python -m katbench.run task=images data.root=",
    "snakemake --cores all --config tasks=tab_csv",
])
def test_readme_shows_the_own_data_commands(command):
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Your own data")[1].split("\n## ")[0]
    assert command in section and "docs/own_data.md" in section
