"""End to end through the CLI: run folder, MLflow run with per-epoch metrics, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from katbench.run import MIXER_NAMES, compose, main, task_names, tasks_dir

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
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in history] == [1, 2, 3, 4, 5]
    assert history[-1]["test_mse"] == metrics["final"]["test_mse"]
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


@pytest.mark.parametrize("task", ["fit_xy", "fit_exp_j0_y2", "pinn_oscillator"])
def test_scientific_tasks_train_without_autocast(task):
    """Errors down to 1e-5 need full precision: no bf16 autocast on a GPU either."""
    from katbench.run import compose
    assert compose([f"tasks={task}", "mixer=grkan"]).trainer.amp is False
    assert compose(["tasks=digits", "mixer=grkan"]).trainer.amp is True


@pytest.mark.parametrize(("args", "expected"), [
    (["task=nope"], "unknown task 'nope'; known: "),
    (["task=fit_xy", "mixer=mpl"], "unknown mixer 'mpl'; known: chebykan, fastkan, fourierkan, "
                                   "grkan, kan, mlp, pau, swiglu\n"),
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


@pytest.mark.parametrize("mixer", MIXER_NAMES)
def test_every_mixer_runs(tmp_path, mixer):
    assert main(["task=pinn_oscillator", f"mixer={mixer}", "profile=quick", "trainer.epochs=2",
                 "tracking.enabled=false", f"results_dir={tmp_path}"]) == 0
    metrics = json.loads((tmp_path / f"runs/pinn_oscillator/{mixer}/seed0/metrics.json")
                         .read_text())
    assert metrics["mixer"] == mixer and metrics["params"] > 0


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


@pytest.mark.parametrize(("args", "expected"), [
    (["trainer.epochs=abc"], "trainer.epochs='abc' has the wrong type; set it to an integer"),
    (["trainer.ema_decay=2"], "trainer.ema_decay=2.0 is invalid; set it to null or in (0, 1)"),
    (["trainer.stop_at_min_lr=true"], "trainer.stop_at_min_lr=True is invalid; set it to "
                                      "false, or use trainer.schedule=plateau"),
    (["mixer=grkan", "mixer.num_groups=3"], "grkan: in_features=2 is not divisible by "
                                            "num_groups=3; pass a divisor of both widths"),
    (["mixer=grkan", "mixer.order=[9,4]"], "no fitted order (9, 4) for 'identity'/sum_abs"),
    (["mixer=kan", "mixer.grid=5"], "a config value has the wrong type (KANLinear.__init__() "
                                    "got an unexpected keyword argument 'grid')"),
    (["results_dir=/proc/katbench"], "results folder /proc/katbench/runs/fit_xy/mlp/seed0 is "
                                     "not writable"),
])
def test_bad_values_are_one_line_and_exit_2(tmp_path, capsys, args, expected):
    argv = ["task=fit_xy", "tracking.enabled=false", *FAST]
    if not any(a.startswith("results_dir=") for a in args):
        argv.append(f"results_dir={tmp_path}")
    assert main([*argv, *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err, err
    assert "Traceback" not in err


def _run(tmp_path, *extra):
    return main(["task=fit_xy", "mixer=mlp", "trainer.epochs=2", "tracking.enabled=false",
                 f"results_dir={tmp_path}", *FAST, *extra])


def test_a_finished_run_is_never_overwritten_by_accident(tmp_path, capsys):
    assert _run(tmp_path) == 0
    run = tmp_path / "runs/fit_xy/mlp/seed0"
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    assert _run(tmp_path, "trainer.lr=1e9") == 2
    assert "already holds a finished run (metrics.json); pass overwrite=true to replace it" \
        in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    assert _run(tmp_path, "overwrite=true") == 0


@pytest.mark.parametrize(("content", "expected"), [
    (b"\x80\x02garbage", "cannot be read (UnpicklingError); delete it or run without resume"),
    ("foreign", "is not a katbench checkpoint (no 'epoch_start'); delete it or run without resume"),
    ("other_model", "does not fit this run's model (Error(s) in loading state_dict"),
])
def test_bad_checkpoints_are_one_line_and_kept(tmp_path, capsys, content, expected):
    import torch

    ckpt = tmp_path / "runs/fit_xy/mlp/seed0/checkpoint.pt"
    ckpt.parent.mkdir(parents=True)
    if content == "foreign":
        torch.save({"model": {}, "weights": torch.ones(2)}, ckpt)
    elif content == "other_model":   # a checkpoint from elsewhere: no config.yaml beside it
        assert _run(tmp_path, "task.widths=[2,7,1]") == 0
        (ckpt.parent / "metrics.json").unlink()
        (ckpt.parent / "config.yaml").unlink()
    else:
        ckpt.write_bytes(content)
    before = ckpt.read_bytes()
    assert _run(tmp_path, "resume=true") == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("katbench.run: error: ") and expected in err, err
    assert ckpt.read_bytes() == before


def test_resuming_with_other_settings_is_one_line_and_keeps_the_run(tmp_path, capsys):
    """A checkpoint continues only the experiment that wrote it: a changed setting (here the
    learning rate) is named; where and how the run executes (threads, progress) may change."""
    assert _run(tmp_path, "trainer.epochs=3") == 0
    run = tmp_path / "runs/fit_xy/mlp/seed0"
    (run / "metrics.json").unlink()              # as if the run had been cut off
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    assert _run(tmp_path, "trainer.epochs=3", "trainer.lr=0.5", "resume=true") == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == (f"katbench.run: error: resume=true: {run} holds a run started with "
                   "trainer.lr=0.001 (now 0.5); resume it with its own settings (its config.yaml) "
                   "or pass overwrite=true to start it over")
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    assert _run(tmp_path, "trainer.epochs=3", "trainer.threads=1", "resume=true") == 0


def test_nan_loss_fails_the_mlflow_run_with_the_reason(tmp_path, capsys):
    assert main(["task=fit_xy", "mixer=mlp", "trainer.epochs=50", "trainer.lr=1e12",
                 "tracking.log_every=1", f"results_dir={tmp_path}", *FAST]) == 1
    err = capsys.readouterr().err
    assert "training loss became" in err and "the last good checkpoint is kept" in err
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("fit_xy").experiment_id])
    assert run.info.status == "FAILED"
    assert run.data.tags["katbench.error"].startswith("NonFiniteLossError: fit_xy/mlp/s0: "
                                                      "training loss became")
    assert not (tmp_path / "runs/fit_xy/mlp/seed0/metrics.json").exists()


def test_mlflow_outage_never_fails_the_run(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")   # nothing listens there
    assert _run(tmp_path, "tracking.enabled=true") == 0
    err = capsys.readouterr().err
    assert "katbench: MLflow at http://127.0.0.1:9 unavailable (" in err
    run = tmp_path / "runs/fit_xy/mlp/seed0"
    pending = json.loads((run / "mlflow_pending.json").read_text())
    assert pending["run_id"] is None and len(pending["metrics"]) == 6
    assert [op[0] for op in pending["ops"]] == ["params", "artifacts", "status"]
    assert json.loads((run / "metrics.json").read_text())["epochs_done"] == 2


def test_starting_over_keeps_an_unfinished_runs_checkpoint(tmp_path, capsys):
    assert _run(tmp_path) == 0
    run = tmp_path / "runs/fit_xy/mlp/seed0"
    (run / "metrics.json").unlink()              # as if the first run had been cut off
    old = (run / "checkpoint.pt").read_bytes()
    assert _run(tmp_path, "trainer.epochs=3") == 0
    assert (run / "checkpoint.previous.pt").read_bytes() == old
    assert "checkpoint.pt of an unfinished run kept as checkpoint.previous.pt" \
        in capsys.readouterr().err


def test_resuming_a_finished_run_keeps_its_times_and_records_provenance(tmp_path, monkeypatch):
    assert _run(tmp_path) == 0
    path = tmp_path / "runs/fit_xy/mlp/seed0/metrics.json"
    first = json.loads(path.read_text())
    assert first["wall_time_s"] >= first["train_time_s"] > 0
    assert first["hardware"].startswith("CPU ") and first["git_commit"] != ""
    assert _run(tmp_path, "resume=true") == 0             # nothing left to train
    again = json.loads(path.read_text())
    assert again["train_time_s"] == first["train_time_s"]
    assert again["wall_time_s"] >= again["train_time_s"]    # earlier attempts counted


def test_a_type_error_in_training_is_a_defect_with_its_traceback(tmp_path, monkeypatch):
    """Not reported as a wrong-typed config value (config values fail when the task is built):
    raised with the original error chained, so the traceback shows where."""
    import katbench.experiment

    def broken_fit(*args, **kwargs):
        raise TypeError("can't convert cuda:0 device type tensor to numpy")

    monkeypatch.setattr(katbench.experiment, "fit", broken_fit)
    with pytest.raises(RuntimeError, match=r"training fit_xy/mlp/s0 failed \(can't convert cuda"
                                           r".*not of the config") as info:
        main(["task=fit_xy", "mixer=mlp", "profile=quick", f"results_dir={tmp_path}",
              "tracking.enabled=false"])
    assert isinstance(info.value.__cause__, TypeError)


def test_folders_beside_the_tasks_folder_are_not_config_groups(tmp_path, monkeypatch):
    """Hydra would read a folder beside the tasks folder named like a key (``resume/``) as a
    config group, and ``resume=true`` as a choice from it: its search path holds only tasks."""
    tasks = tmp_path / "my_tasks"   # any name: it is linked as tasks/
    tasks.mkdir()
    (tasks / "fit_xy.yaml").write_text((tasks_dir() / "fit_xy.yaml").read_text())
    for key in ("resume", "seed", "trainer"):
        (tmp_path / key).mkdir()
        (tmp_path / key / "x.yaml").write_text("a: 1\n")
    monkeypatch.setenv("KATBENCH_TASKS_DIR", str(tasks))
    cfg = compose(["tasks=fit_xy", "mixer=mlp", "resume=true", "seed=3", "trainer.epochs=2"])
    assert (cfg.resume, cfg.seed, cfg.trainer.epochs) == (True, 3, 2)
