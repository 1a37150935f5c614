"""Where the time of one group_rational forward+backward goes on a GPU, against GELU's.

For each dtype at x = [64, 1000, 512], g = 8: wall time per step (CUDA events), the host's
time to issue a step (if it is close to the wall time, the step is bound by Python/launch
overhead, not by the GPU) and each kernel's GPU time (torch.profiler). For hardware counters
run it under `ncu` with --ncu (a few plain steps, no profiler of its own):
`ncu --clock-control none -k regex:_kernel python3 scripts/profile_op.py --ncu`.
"""

from __future__ import annotations

import argparse
import time

import torch

from katbench.bench.op import DTYPES, activations, build_step
from katbench.bench.timing import gpu_kernel_us


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"],
                        choices=sorted(DTYPES))
    parser.add_argument("--shape", type=int, nargs="+", default=[64, 1000, 512])
    parser.add_argument("--groups", type=int, default=8)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--ncu", action="store_true", help="two plain steps each, for ncu")
    args = parser.parse_args()
    table = activations("sum_abs")
    device = torch.device("cuda")
    for name in args.dtypes:
        for impl in ("ours", "gelu"):
            step, _ = build_step(table[impl], impl, "forward+backward", tuple(args.shape),
                                 args.groups, DTYPES[name], device)
            for _ in range(2 if args.ncu else 3):
                step()
            torch.cuda.synchronize()
            if args.ncu:
                continue
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            host = time.perf_counter()
            start.record()
            for _ in range(args.steps):
                step()
            end.record()
            host = (time.perf_counter() - host) / args.steps * 1e6
            torch.cuda.synchronize()
            wall = start.elapsed_time(end) / args.steps * 1e3
            kernels = gpu_kernel_us(step, args.steps)
            print(f"{name:9s} {impl:5s} wall {wall:7.1f} us/step  host issue {host:7.1f} us/step"
                  f"  GPU busy {sum(kernels.values()):7.1f} us/step")
            for key, us in sorted(kernels.items(), key=lambda item: -item[1]):
                print(f"    {us:8.1f} us  {key[:100]}")


if __name__ == "__main__":
    main()
