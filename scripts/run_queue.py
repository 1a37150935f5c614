"""Run many katbench runs on one GPU machine: several per GPU, resumable, bounded in time.

The graph and tabular models use a fraction of a GPU and are bound by the host issuing work, so
one process per run, several per GPU, fills the machine. Built for machines lent for a few
minutes per command (the device), but nothing here is specific to them:

    python scripts/run_queue.py prepare --profile paper --tasks pattern,cluster [key=value ...]
    setsid python scripts/run_queue.py start --profile paper --tasks pattern,cluster \\
        --mixers mlp,kan,grkan --seeds 0,1,2,3 --slots 24 --stop-after-s 1500 &
    python scripts/run_queue.py start --tasks cluster --mixers "grkan[act_init=swish]" ...
    python scripts/run_queue.py status              # done / running / waiting, last log lines
    python scripts/run_queue.py stop                # SIGTERM: every run checkpoints, then exits
    python scripts/run_queue.py pack OUT [--checkpoints]   # run folders -> OUT/runs.tgz.partNN
    python scripts/run_queue.py restart --stop-after-s 1500   # a packed queue, as it was started

``prepare`` builds each task's data once (generated graphs are cached; parallel runs would each
generate them). ``start`` launches every listed run that has no ``metrics.json`` with
``resume=true`` (a checkpoint left by an earlier stop is continued), ``--slots`` at a time,
spread round-robin over the visible GPUs, the runs listed first started first; each run's log
is ``<results>/logs/<task>-<label>-s<seed>.txt`` (each launch's command line first). A mixer may
be a study variant (``grkan[act_init=swish]``, docs/studies.md): its runs go to
``runs/<task>/<label>/seed<k>`` (``grkan-act_init=swish``), as the pipeline's do. At
``--stop-after-s`` (or on ``stop``) every run gets SIGTERM, writes its checkpoint and exits 143;
``start`` again continues them.
``pack`` writes the run folders as a tar.gz split into parts of ``--part-mb`` (finished runs
without their checkpoint; unfinished ones only with ``--checkpoints``); unpack with
``cat OUT/runs.tgz.part* | tar xz -C <results>``. ``start`` records its arguments in
``<results>/queue.json``, which ``pack`` keeps: ``restart``, in the results folder of an unpacked
queue (on another machine, in a later session), prepares its data and starts it again with the
same tasks, mixers, seeds and overrides, so that its runs resume exactly the experiments their
checkpoints hold.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from katbench.studies import Variant, parse_variant, split_top_level
from katbench.tracking import init_store, run_dir

STOP_WAIT_S = 120   # a run checkpoints within one training step of SIGTERM
EXIT_MARK = "run_queue: exit status "   # the last line of a run's log once its process ended
START_MARK = "run_queue: started "       # the line before each launch's output: its command
QUEUE_FILE = "queue.json"   # start's arguments, for restart
SAVED = ("profile", "tasks", "mixers", "seeds", "slots", "overrides")


def run_ids(tasks: list[str], mixers: list[str], seeds: list[int]) -> list[tuple[str, str, int]]:
    """(task, label, seed) in launch order: task-major, then seed, then mixer; a plain mixer is
    its own label, a variant's is ``Variant.label``."""
    parsed = variants(mixers)
    labels = [parsed[m].label for m in mixers]
    return [(t, m, s) for t in tasks for s in seeds for m in labels]


def variants(mixers: list[str]) -> dict[str, Variant]:
    """Each ``--mixers`` item (a mixer or a study variant) parsed, by its text; a bad one exits
    with the parser's one-line error."""
    try:
        return {m: parse_variant(m) for m in mixers}
    except ValueError as error:
        raise SystemExit(f"run_queue: {error}") from None


def log_path(results: Path, task: str, mixer: str, seed: int) -> Path:
    """Where ``start`` sends a run's output."""
    return results / "logs" / f"{task}-{mixer}-s{seed}.txt"


def mark_exit(results: Path, run: tuple[str, str, int], returncode: int) -> None:
    """End the run's log with its exit status (``status`` reads it)."""
    with open(log_path(results, *run), "a") as log:
        log.write(f"{EXIT_MARK}{returncode}\n")


def gpu_count() -> int:
    """Visible CUDA devices (0 without torch or CUDA)."""
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count()


def init_tracking_store(results: Path) -> None:
    """Create the MLflow store once before the runs start (parallel runs would race on its
    schema); without mlflow installed, runs queue their tracking data in their folders."""
    try:
        import mlflow  # noqa: F401
    except ImportError:
        return
    init_store(results)


def prepare(profile: str, tasks: list[str], overrides: list[str] = ()) -> None:
    """Build each task's data once, in this process, so that parallel runs find it cached
    (``overrides`` as the runs will pass them, e.g. another ``task.data_seed``)."""
    from katbench.run import _normalise, compose
    from katbench.tasks import build_task

    for task in tasks:
        start = time.perf_counter()
        build_task(compose(_normalise([f"task={task}", "mixer=mlp", f"profile={profile}",
                                       *overrides])))
        print(f"prepared {task} in {time.perf_counter() - start:.0f} s", flush=True)


def start(args: argparse.Namespace) -> int:
    """Launch the unfinished runs, ``args.slots`` at a time, until done or the deadline."""
    results = Path(args.results)
    todo = [r for r in run_ids(args.tasks, args.mixers, args.seeds)
            if not (run_dir(results, *r) / "metrics.json").exists()]
    run_args = {v.label: v.overrides() for v in variants(args.mixers).values()}
    (results / "logs").mkdir(parents=True, exist_ok=True)
    gpus = gpu_count()
    init_tracking_store(results)
    (results / QUEUE_FILE).write_text(json.dumps({k: getattr(args, k) for k in SAVED}, indent=1))
    deadline = time.monotonic() + args.stop_after_s if args.stop_after_s else None
    (results / "queue.pid").write_text(f"{os.getpid()}\n")
    stopping = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stopping.update(now=True))
    running: dict[tuple[str, str, int], subprocess.Popen] = {}
    failed: list[str] = []
    launched = 0
    where = f"{gpus} GPU(s)" if gpus else "the CPU"
    print(f"queue: {len(todo)} runs to do, {args.slots} at a time on {where}", flush=True)
    while todo or running:
        failed += _reap_finished(results, running)
        if stopping["now"] or (deadline is not None and time.monotonic() >= deadline):
            break
        while todo and len(running) < args.slots:
            run = todo.pop(0)
            gpu = launched % gpus if gpus else None
            running[run] = _launch(results, run, run_args[run[1]], args, gpu)
            launched += 1
        time.sleep(2)
    _stop_all(results, running)
    left = len(todo) + len(running)
    print(f"queue: stopped; {left} runs unfinished (start again to continue)"
          + (f"; failed: {', '.join(failed)}" if failed else ""), flush=True)
    (results / "queue.pid").unlink(missing_ok=True)
    return 1 if failed else 0


def _reap_finished(results: Path, running: dict[tuple[str, str, int], subprocess.Popen]
                   ) -> list[str]:
    """Remove the ended runs from ``running``, marking their logs; the failed ones' names."""
    failed = []
    for run, proc in list(running.items()):
        if proc.poll() is not None:
            del running[run]
            mark_exit(results, run, proc.returncode)
            if proc.returncode not in (0, 130, 143):   # 130/143: stopped, checkpointed
                failed.append(f"{'/'.join(map(str, run))} (exit {proc.returncode})")
    return failed


def _launch(results: Path, run: tuple[str, str, int], mixer_args: list[str],
            args: argparse.Namespace, gpu: int | None) -> subprocess.Popen:
    """Start one run (``mixer_args``: its variant's ``katbench.run`` arguments) on ``gpu``,
    its output appended to its log after the command line."""
    task, _, seed = run
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(gpu)
    log_every = [] if any(o.startswith("trainer.log_every=") for o in args.overrides) \
        else ["trainer.log_every=1"]
    cmd = [sys.executable, "-m", "katbench.run", f"task={task}", *mixer_args, f"seed={seed}",
           f"profile={args.profile}", "resume=true", f"results_dir={results}",
           "trainer.threads=1", "trainer.progress=log", *log_every, *args.overrides]
    with open(log_path(results, *run), "a") as log:
        log.write(f"{START_MARK}{' '.join(cmd[1:])}\n")
        log.flush()
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)


def _stop_all(results: Path, running: dict[tuple[str, str, int], subprocess.Popen]) -> None:
    """SIGTERM every running run, wait for its checkpoint (killed after ``STOP_WAIT_S``) and
    mark its log."""
    for proc in running.values():
        proc.send_signal(signal.SIGTERM)
    for run, proc in running.items():
        try:
            proc.wait(timeout=STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        mark_exit(results, run, proc.returncode)


def logged_runs(results: Path) -> list[tuple[tuple[str, str, int], Path]]:
    """Each run with a log, in the log names' order: the queue's runs (``queue.json``) matched
    to their logs, so that labels with dashes read right; logs of other runs by their names."""
    queue_file = results / QUEUE_FILE
    saved = json.loads(queue_file.read_text()) if queue_file.exists() else {}
    known = {log_path(results, *run): run for run in
             run_ids(saved.get("tasks", []), saved.get("mixers", []), saved.get("seeds", []))}
    runs = []
    for path in sorted(results.glob("logs/*.txt")):
        task, label, seed = path.stem.rsplit("-", 2)
        runs.append((known.get(path, (task, label, int(seed[1:]))), path))
    return runs


def status(args: argparse.Namespace) -> int:
    """Print finished runs with their metric, and each unfinished run's last log line."""
    results = Path(args.results)
    for (task, label, seed), path in logged_runs(results):
        folder = run_dir(results, task, label, seed)
        if (folder / "metrics.json").exists():
            m = json.loads((folder / "metrics.json").read_text())
            best = {k: round(v, 4) for k, v in (m["best"] or {}).items()}
            print(f"done    {path.stem}: {best} epochs={m['epochs_done']} "
                  f"train_time_s={m['train_time_s']:.0f}")
        else:
            lines = path.read_text(errors="replace").strip().splitlines() or ["(no output)"]
            ended = lines[-1].startswith(EXIT_MARK)
            state = "stopped" if ended and lines[-1].endswith(("130", "143")) else \
                "failed " if ended else "running"
            shown = [line for line in lines
                     if not line.startswith((EXIT_MARK, START_MARK))] or lines
            print(f"{state} {path.stem}: {shown[-1][:200]}")
    return 0


def stop(args: argparse.Namespace) -> int:
    """SIGTERM the queue started with ``start``; it stops its runs, which checkpoint."""
    pid_file = Path(args.results) / "queue.pid"
    if not pid_file.exists():
        print(f"no queue running ({pid_file} missing)")
        return 0
    pid = int(pid_file.read_text())
    os.kill(pid, signal.SIGTERM)
    for _ in range(STOP_WAIT_S + 10):
        if not pid_file.exists():
            return 0
        time.sleep(1)
    print(f"queue {pid} did not stop within {STOP_WAIT_S} s", file=sys.stderr)
    return 1


def restart(args: argparse.Namespace) -> int:
    """Prepare and start the queue of ``results/queue.json`` (an unpacked queue) again."""
    saved = Path(args.results) / QUEUE_FILE
    if not saved.exists():
        print(f"restart: no {saved}; unpack a queue packed by `pack` there, or start one with "
              "`start --tasks ...`", file=sys.stderr)
        return 2
    arguments = json.loads(saved.read_text())
    if args.slots is not None:
        arguments["slots"] = args.slots
    prepare(arguments["profile"], arguments["tasks"], arguments["overrides"])
    return start(argparse.Namespace(results=args.results, stop_after_s=args.stop_after_s,
                                    **arguments))


def pack(args: argparse.Namespace) -> int:
    """Write ``results/runs``, ``results/logs`` and ``results/queue.json`` as
    ``OUT/runs.tgz.partNN``; safe while the runs go on (their checkpoints are renamed into place
    when written, and the files being written are left out)."""
    results, out = Path(args.results), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(results.glob("runs/*/*/seed*")):
            finished = (path / "metrics.json").exists()
            for file in sorted(p for p in path.rglob("*") if p.is_file()):
                if file.name.startswith("checkpoint") and (finished or not args.checkpoints):
                    continue
                if file.name.endswith(".tmp"):   # a checkpoint being written (renamed when done)
                    continue
                tar.add(file, arcname=str(file.relative_to(results)))
        for file in [*sorted(results.glob("logs/*.txt")), *results.glob(QUEUE_FILE)]:
            tar.add(file, arcname=str(file.relative_to(results)))
    data, size = buffer.getvalue(), args.part_mb * 2**20
    parts = [data[i:i + size] for i in range(0, len(data), size)] or [b""]
    for i, part in enumerate(parts):
        (out / f"runs.tgz.part{i:02d}").write_bytes(part)
    print(f"packed {len(data) / 2**20:.1f} MiB into {len(parts)} part(s) in {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command line: prepare | start | restart | status | stop | pack."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", default="results", help="results_dir of the runs")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="build each task's data once")
    p.add_argument("--profile", default="paper")
    p.add_argument("--tasks", type=lambda s: s.split(","), required=True)
    p.add_argument("overrides", nargs="*", help="key=value as the runs will get them")
    s = sub.add_parser("start", help="run the unfinished runs")
    s.add_argument("--profile", default="paper")
    s.add_argument("--tasks", type=lambda v: v.split(","), required=True)
    s.add_argument("--mixers", type=split_top_level, default=["mlp", "kan", "grkan"],
                   help="comma-separated mixers or study variants (grkan[act_init=swish])")
    s.add_argument("--seeds", type=lambda v: [int(x) for x in v.split(",")], default=[0])
    s.add_argument("--slots", type=int, default=8, help="runs at a time (all GPUs together)")
    s.add_argument("--stop-after-s", type=float, default=None)
    s.add_argument("overrides", nargs="*", help="key=value for every run")
    r = sub.add_parser("restart", help="start an unpacked queue again, as it was started")
    r.add_argument("--slots", type=int, default=None, help="runs at a time (default: as saved)")
    r.add_argument("--stop-after-s", type=float, default=None)
    sub.add_parser("status", help="finished and running runs")
    sub.add_parser("stop", help="checkpoint and stop every run")
    k = sub.add_parser("pack", help="run folders -> OUT/runs.tgz.partNN")
    k.add_argument("out")
    k.add_argument("--checkpoints", action="store_true",
                   help="include unfinished runs' checkpoints (to resume elsewhere)")
    k.add_argument("--part-mb", type=int, default=15)
    args = parser.parse_args(argv)
    if args.command == "prepare":
        prepare(args.profile, args.tasks, args.overrides)
        return 0
    return {"start": start, "restart": restart, "status": status, "stop": stop,
            "pack": pack}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
