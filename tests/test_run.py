"""End to end through the CLI: run folder, MLflow run with per-epoch metrics, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from katbench.run import main, task_names

FAST = ["task.n_train=64", "task.n_val=64", "task.n_test=64", "task.grid_size=8",
        "trainer.progress=none"]


@pytest.fixture(autouse=True)
def _no_env_tracking(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("KATBENCH_DEBUG", raising=False)


def test_fitting_run_writes_run_folder_and_mlflow_run(tmp_path):
    assert main(["task=fit_xy", "mixer=grkan", "seed=3", "trainer.epochs=5",
                 "tracking.log_every=1", f"results_dir={tmp_path}", *FAST]) == 0
    run = tmp_path / "runs" / "fit_xy" / "grkan" / "seed3"
    assert {p.name for p in run.iterdir()} >= {"config.yaml", "metrics.json", "checkpoint.pt",
                                               "surface.npz", "rationals.npz", "rationals.png"}
    assert not list(run.glob(".*tmp")), "temporary files must be renamed into place"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs_done"] == 5 and metrics["params"] > 0
    assert metrics["selected_on"] == "val_mse" and metrics["final"]["test_mse"] > 0
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["mixer"] == {"name": "grkan", "num_groups": 1}   # the task's mixer layer
    assert "profiles" not in config and config["seed"] == 3

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("fit_xy")
    (logged,) = client.search_runs([experiment.experiment_id])
    assert logged.info.run_name == "fit_xy-grkan-s3" and logged.info.status == "FINISHED"
    assert logged.info.run_id == metrics["mlflow_run_id"]
    assert logged.data.params["trainer.epochs"] == "5"
    assert {"params", "git_commit", "torch_version", "device"} <= set(logged.data.params)
    for key in ("train_loss", "val_mse", "test_mse", "lr", "samples_per_s", "epoch_time_s"):
        history = client.get_metric_history(logged.info.run_id, key)
        assert [m.step for m in history] == [1, 2, 3, 4, 5], key
    artifacts = {a.path for a in client.list_artifacts(logged.info.run_id)}
    assert {"config.yaml", "metrics.json", "rationals.png"} <= artifacts


def test_sweep_writes_one_folder_per_combination(tmp_path):
    assert main(["task=fit_xy,fit_x_div_y", "mixer=mlp", "seed=0,1", "trainer.epochs=2",
                 "tracking.enabled=false", f"results_dir={tmp_path}", *FAST]) == 0
    done = sorted(str(p.parent.relative_to(tmp_path / "runs"))
                  for p in tmp_path.glob("runs/*/*/*/metrics.json"))
    assert done == ["fit_x_div_y/mlp/seed0", "fit_x_div_y/mlp/seed1",
                    "fit_xy/mlp/seed0", "fit_xy/mlp/seed1"]


def test_profile_applies_task_overrides_under_the_command_line(tmp_path):
    assert main(["task=fit_xy", "mixer=mlp", "profile=quick", "trainer.epochs=3",
                 "tracking.enabled=false", f"results_dir={tmp_path}", *FAST]) == 0
    config = yaml.safe_load((tmp_path / "runs/fit_xy/mlp/seed0/config.yaml").read_text())
    assert config["trainer"]["lr"] == 1e-2          # from profiles.quick
    assert config["trainer"]["epochs"] == 3         # the command line wins


@pytest.mark.parametrize(("args", "expected"), [
    (["task=nope"], "unknown task 'nope'; known: "),
    (["task=fit_xy", "mixer=mpl"], "unknown mixer 'mpl'; known: grkan, kan, mlp"),
    (["task=fit_xy", "trainer.lrr=1"], "unknown config key 'trainer.lrr'"),
    (["task=fit_xy", "trainer.lr=-1"], "trainer.lr=-1.0 is invalid; set it to a positive number"),
    (["task=fit_xy", "profile=huge"], "task 'fit_xy' has no profile 'huge'; its profiles: "),
    (["mixer=mlp"], "You must specify 'tasks'"),
    (["task"], "argument 'task' is not key=value"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, expected):
    assert main([*args, f"results_dir={tmp_path}", "tracking.enabled=false"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err, err
    assert not (tmp_path / "runs").exists()


def test_cli_process_exit_status_and_no_traceback():
    proc = subprocess.run([sys.executable, "-m", "katbench.run", "task=fit_xy", "mixer=foo"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("katbench.run: error: unknown mixer 'foo'")
    assert "Traceback" not in proc.stderr


def test_help_lists_tasks_and_mixers(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in task_names()) and "grkan" in out
