"""scripts/run_queue.py: runs launched in slots, stopped at the deadline with a checkpoint,
finished runs skipped, status, pack, and a packed queue restarted elsewhere as it was started."""

from __future__ import annotations

import importlib.util
import io
import tarfile
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "run_queue.py"
spec = importlib.util.spec_from_file_location("run_queue", SCRIPT)
run_queue = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run_queue)

QUICK = ["--profile", "quick", "--tasks", "fit_xy", "--mixers", "mlp", "--slots", "2"]
CPU = ["trainer.device=cpu", "tracking.enabled=false"]


def _unpack(out: Path) -> set[str]:
    data = b"".join(p.read_bytes() for p in sorted(out.glob("runs.tgz.part*")))
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return set(tar.getnames())


def test_runs_finish_then_are_skipped_and_packed(tmp_path, capsys):
    results = str(tmp_path / "res")
    args = ["--results", results, "start", *QUICK, "--seeds", "0,1", *CPU, "trainer.epochs=5"]
    assert run_queue.main(args) == 0
    for seed in (0, 1):
        assert (tmp_path / f"res/runs/fit_xy/mlp/seed{seed}/metrics.json").exists()
        log = (tmp_path / f"res/logs/fit_xy-mlp-s{seed}.txt").read_text()
        assert log.endswith(f"{run_queue.EXIT_MARK}0\n")
    assert "queue: 2 runs to do, 2 at a time on the CPU" in capsys.readouterr().out
    assert run_queue.main(args) == 0                     # finished runs are not run again
    assert "queue: 0 runs to do" in capsys.readouterr().out
    run_queue.main(["--results", results, "status"])
    assert capsys.readouterr().out.count("done    fit_xy-mlp-s") == 2
    assert run_queue.main(["--results", results, "pack", str(tmp_path / "out"),
                           "--part-mb", "1"]) == 0
    names = _unpack(tmp_path / "out")
    assert "runs/fit_xy/mlp/seed0/metrics.json" in names and "logs/fit_xy-mlp-s1.txt" in names
    assert not any("checkpoint" in n for n in names)      # finished: no checkpoint needed


def test_deadline_stops_runs_with_a_checkpoint(tmp_path, capsys):
    results = str(tmp_path / "res")
    args = ["--results", results, "start", *QUICK, "--stop-after-s", "20", *CPU,
            "trainer.epochs=1000000", "trainer.eval_every=1000", "trainer.checkpoint_every_s=1"]
    assert run_queue.main(args) == 0
    folder = tmp_path / "res/runs/fit_xy/mlp/seed0"
    assert (folder / "checkpoint.pt").exists() and not (folder / "metrics.json").exists()
    assert "1 runs unfinished" in capsys.readouterr().out
    log = (tmp_path / "res/logs/fit_xy-mlp-s0.txt").read_text()
    assert log.endswith(f"{run_queue.EXIT_MARK}143\n") and "checkpoint saved" in log
    run_queue.main(["--results", results, "status"])
    assert capsys.readouterr().out.startswith("stopped fit_xy-mlp-s0")
    (folder / ".checkpoint.pt.x1y2.tmp").write_bytes(b"half")  # as if caught mid-write
    run_queue.main(["--results", results, "pack", str(tmp_path / "out"), "--checkpoints"])
    packed = _unpack(tmp_path / "out")
    assert {"runs/fit_xy/mlp/seed0/checkpoint.pt", "queue.json"} <= packed
    assert not any(name.endswith(".tmp") for name in packed)

    # elsewhere, later: the unpacked queue continues with its own arguments (a run started with
    # other settings would refuse the checkpoint and fail)
    moved = tmp_path / "moved"
    data = b"".join(p.read_bytes() for p in sorted((tmp_path / "out").glob("runs.tgz.part*")))
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        tar.extractall(moved, filter="data")
    checkpoint = moved / "runs/fit_xy/mlp/seed0/checkpoint.pt"
    epochs = torch.load(checkpoint, weights_only=False)["state"]["epoch"]
    capsys.readouterr()
    assert run_queue.main(["--results", str(moved), "restart", "--stop-after-s", "12"]) == 0
    out = capsys.readouterr().out
    assert "prepared fit_xy in" in out and "queue: 1 runs to do, 2 at a time" in out
    assert "failed" not in out
    assert torch.load(checkpoint, weights_only=False)["state"]["epoch"] > epochs
    log = (moved / "logs/fit_xy-mlp-s0.txt").read_text()
    assert log.count(f"{run_queue.EXIT_MARK}143\n") == 2
    assert log.count(f"{run_queue.START_MARK}-m katbench.run task=fit_xy mixer=mlp seed=0 "
                     "profile=quick resume=true") == 2


def test_restart_without_a_packed_queue_says_what_to_do(tmp_path, capsys):
    assert run_queue.main(["--results", str(tmp_path), "restart"]) == 2
    assert "unpack a queue packed by `pack` there" in capsys.readouterr().err


def test_prepare_builds_the_data_the_runs_will_use(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KATBENCH_CACHE", str(tmp_path / "cache"))

    def prepared(*overrides: str) -> set[str]:
        assert run_queue.main(["prepare", "--profile", "quick", "--tasks", "pattern",
                               *overrides]) == 0
        assert "prepared pattern in" in capsys.readouterr().out
        return {p.name for p in (tmp_path / "cache").rglob("train-*.pt")}

    default = prepared()
    assert len(default) == 1
    assert len(prepared("task.data_seed=3") - default) == 1   # the override reaches the data


def test_study_variants_run_in_their_label_folders(tmp_path, capsys):
    results = str(tmp_path / "res")
    args = ["--results", results, "start", "--profile", "quick", "--tasks", "fit_xy",
            "--mixers", "mlp,grkan[act_init=swish, num_groups=1]", "--slots", "2", *CPU,
            "trainer.epochs=3"]
    assert run_queue.main(args) == 0
    label = "grkan-act_init=swish-num_groups=1"
    folder = tmp_path / "res/runs/fit_xy" / label / "seed0"
    config = (folder / "config.yaml").read_text()
    assert (folder / "metrics.json").exists() and "act_init: swish" in config
    assert (tmp_path / f"res/logs/fit_xy-{label}-s0.txt").exists()
    assert "queue: 2 runs to do" in capsys.readouterr().out
    run_queue.main(["--results", results, "status"])
    assert f"done    fit_xy-{label}-s0" in capsys.readouterr().out


def test_unknown_variant_setting_is_one_line(tmp_path):
    args = ["--results", str(tmp_path / "res"), "start", "--profile", "quick", "--tasks",
            "fit_xy", "--mixers", "grkan[act_inti=swish]", *CPU]
    with pytest.raises(SystemExit, match="grkan has no setting 'act_inti'"):
        run_queue.main(args)
    assert not (tmp_path / "res").exists()                 # nothing written
