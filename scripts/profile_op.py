"""Where the time of one group_rational forward+backward goes on a GPU, against GELU's.

For each dtype at x = [64, 1000, 512], g = 8 (or, with --block T|S|B, for the KAT block against
the GELU MLP block of `python -m katbench.bench block`): wall time per step (CUDA events), the
host's time to issue a step (if it is close to the wall time, the step is bound by Python/launch
overhead, not by the GPU) and each kernel's GPU time (torch.profiler). For hardware counters
run it under `ncu` with --ncu (a few plain steps, no profiler of its own):
`ncu --clock-control none -k regex:_kernel python3 scripts/profile_op.py --ncu`.
"""

from __future__ import annotations

import argparse
import time

import torch

from katbench.bench.block import WIDTHS, block_step
from katbench.bench.op import DTYPES, activations, build_step
from katbench.bench.timing import gpu_kernel_us, host_op_us
from katbench.mixers import DEFAULT_RECOMPUTE, RECOMPUTE


def report(label: str, step, steps: int, host_ops: int = 0) -> None:
    """Print wall, host-issue and GPU-busy time per step, each kernel's GPU time and, if
    ``host_ops``, the ops taking the most host time."""
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    host = time.perf_counter()
    start.record()
    for _ in range(steps):
        step()
    end.record()
    host = (time.perf_counter() - host) / steps * 1e6
    torch.cuda.synchronize()
    wall = start.elapsed_time(end) / steps * 1e3
    kernels = gpu_kernel_us(step, steps)
    print(f"{label} wall {wall:7.1f} us/step  host issue {host:7.1f} us/step"
          f"  GPU busy {sum(kernels.values()):7.1f} us/step")
    for key, us in sorted(kernels.items(), key=lambda item: -item[1]):
        print(f"    {us:8.1f} us  {key[:100]}")
    if host_ops:
        ops = host_op_us(step, steps)
        print(f"  host self time, top {host_ops} of {sum(ops.values()):.1f} us/step (profiled):")
        for key, us in sorted(ops.items(), key=lambda item: -item[1])[:host_ops]:
            print(f"    {us:8.1f} us  {key[:100]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"],
                        choices=sorted(DTYPES))
    parser.add_argument("--shape", type=int, nargs="+", default=[64, 1000, 512])
    parser.add_argument("--groups", type=int, default=8)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--ncu", action="store_true", help="two plain steps each, for ncu")
    parser.add_argument("--host-ops", type=int, default=0, metavar="N",
                        help="also list the N ops taking the most host (CPU) time")
    parser.add_argument("--block", choices=list(WIDTHS),
                        help="profile the KAT and GELU MLP blocks at this ViT size instead")
    parser.add_argument("--recompute", nargs="*", default=[], choices=list(RECOMPUTE),
                        help="with --block: also the KAT block with these recompute modes "
                             f"(it runs with GRKANMixer's default, {DEFAULT_RECOMPUTE!r})")
    args = parser.parse_args()
    device = torch.device("cuda")
    if args.block:
        blocks = [("mlp", {}), ("grkan", {})] + [("grkan", {"recompute": mode})
                                                 for mode in args.recompute]
        for mixer, options in blocks:
            report(f"block {args.block} {mixer:5s} {options.get('recompute', '')}".rstrip(),
                   block_step(mixer, args.block, (128, 197), device, **options), args.steps,
                   args.host_ops)
        return
    table = activations("sum_abs")
    for name in args.dtypes:
        for impl in ("ours", "gelu"):
            step, _ = build_step(table[impl], impl, "forward+backward", tuple(args.shape),
                                 args.groups, DTYPES[name], device)
            if args.ncu:
                step()
                step()
                torch.cuda.synchronize()
                continue
            report(f"{name:9s} {impl:5s}", step, args.steps, args.host_ops)


if __name__ == "__main__":
    main()
