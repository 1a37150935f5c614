"""Where a Graph Transformer training step's time goes (PATTERN/CLUSTER, paper profile): wall
time per step, the host's time to issue it and the GPU's kernel time, eager and compiled.

The GPU time is the floor that many runs sharing one GPU divide between them (eight processes
time-slice it): it says how many PATTERN/CLUSTER runs one GPU-hour can train, and whether a
step bound by the host (CUDA graphs would help) or by the GPU (fusion would) is the next thing
to fix. Steps are real ones (the task's loader, loss and Adam) on the first ``--batches``
training batches, cycled.

    python scripts/profile_graph_step.py --task pattern --mixers mlp grkan --compile
    python scripts/profile_graph_step.py --task pattern --compile --compile-mode reduce-overhead \
        task.pad_nodes=auto
    python scripts/profile_graph_step.py --task pattern --compile --compile-mode reduce-overhead \
        task.pad_nodes=auto trainer.matmul_precision=high   # TF32 matmuls (trainer.amp=true: bf16)
"""

from __future__ import annotations

import argparse
import itertools
import time

import torch

from katbench.bench.timing import gpu_kernel_us, host_issue_us, time_steps
from katbench.run import _normalise, compose
from katbench.tasks import build_task, to_device
from katbench.train import TrainerSettings


def training_step(task: str, mixer: str, profile: str, device: torch.device, batches: int,
                  compiled: str | None, overrides: list[str]):
    """One training step of ``task`` with ``mixer`` as a closure over its first ``batches``
    training batches (cycled), the way the trainer runs it; ``compiled``: None (eager) or
    ``torch.compile``'s mode."""
    cfg = compose(_normalise([f"task={task}", f"mixer={mixer}", f"profile={profile}",
                              *overrides]))
    torch.manual_seed(0)
    spec = build_task(cfg)
    model = spec.model.to(device).train()
    if callable(getattr(spec.train, "to", None)):
        spec.train.to(device)
    data = itertools.cycle([to_device(b, device) for b in itertools.islice(spec.train, batches)])
    forward = torch.compile(model, mode=compiled) if compiled else model
    optimizer = torch.optim.Adam(model.parameters(), lr=float(cfg.trainer.lr))
    spec_loss = spec.loss
    autocast = TrainerSettings.from_config(cfg.trainer).numerics(device)  # as the trainer

    def step() -> None:
        with autocast:
            loss = spec_loss(forward, next(data))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="pattern")
    parser.add_argument("--mixers", nargs="+", default=["mlp"])
    parser.add_argument("--profile", default="paper")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    parser.add_argument("--compile-mode", default="default",
                        help="torch.compile's mode (reduce-overhead: CUDA graphs, which need "
                             "task.pad_nodes=auto)")
    parser.add_argument("--kernels", type=int, default=8, help="top GPU kernels to list")
    parser.add_argument("--eager-only", nargs="*", default=[], metavar="MIXER",
                        help="mixers not to compile even with --compile")
    parser.add_argument("overrides", nargs="*", help="key=value for the task's config, e.g. "
                        "task.generator.train_per_pattern=10 (fewer graphs, same sizes)")
    args = parser.parse_args()
    device = torch.device(args.device)
    for mixer, compiled in itertools.product(args.mixers, [False, True] if args.compile
                                             else [False]):
        if compiled and mixer in args.eager_only:
            continue
        label = f"{args.task} {mixer} {args.compile_mode if compiled else 'eager'}"
        step = training_step(args.task, mixer, args.profile, device, args.batches,
                             args.compile_mode if compiled else None, args.overrides)
        start = time.perf_counter()
        for _ in range(args.batches):   # warm-up: every batch shape once (compiles them)
            step()
        warmup = time.perf_counter() - start
        wall = time_steps(step, args.steps, device) / args.steps * 1e3
        line = f"{label:28s} wall {wall:7.2f} ms/step (warm-up {warmup:5.1f} s)"
        if device.type == "cuda":
            host = host_issue_us(step, args.steps) / 1e3
            kernels = gpu_kernel_us(step, args.steps)
            busy = sum(kernels.values()) / 1e3
            line += (f"  host issue {host:7.2f} ms/step  GPU busy {busy:6.2f} ms/step"
                     f"  ({len(kernels)} kernel names)")
        print(line, flush=True)
        if device.type == "cuda":
            for name, us in sorted(kernels.items(), key=lambda kv: -kv[1])[:args.kernels]:
                print(f"    {us / 1e3:7.3f} ms  {name[:110]}")


if __name__ == "__main__":
    main()
