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
import torch.nn.functional as F
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from katbench.ops import group_rational


def steps(dtype: torch.dtype, shape: tuple[int, ...], groups: int) -> dict:
    """Forward+backward steps of ours and GELU on one random tensor."""
    x = torch.randn(*shape, device="cuda", dtype=dtype, requires_grad=True)
    a = torch.randn(1, 6, device="cuda").expand(groups, 6).contiguous().requires_grad_()
    b = torch.rand(groups, 4, device="cuda", requires_grad=True)
    g = torch.randn_like(x)

    def ours() -> None:
        x.grad = a.grad = b.grad = None
        group_rational(x, a, b).backward(g)

    def gelu() -> None:
        x.grad = None
        F.gelu(x).backward(g)

    return {"ours": ours, "gelu": gelu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--shape", type=int, nargs="+", default=[64, 1000, 512])
    parser.add_argument("--groups", type=int, default=8)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--ncu", action="store_true", help="two plain steps each, for ncu")
    args = parser.parse_args()
    for name in args.dtypes:
        for impl, step in steps(getattr(torch, name), tuple(args.shape), args.groups).items():
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
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                for _ in range(args.steps):
                    step()
                torch.cuda.synchronize()
            kernels = [(e.device_time_total / args.steps, e.count / args.steps, e.key)
                       for e in prof.key_averages() if e.device_type == DeviceType.CUDA]
            busy = sum(k[0] for k in kernels)
            print(f"{name:9s} {impl:5s} wall {wall:7.1f} us/step  host issue {host:7.1f} us/step"
                  f"  GPU busy {busy:7.1f} us/step")
            for t, count, key in sorted(kernels, reverse=True):
                print(f"    {t:8.1f} us  x{count:.0f}  {key[:100]}")


if __name__ == "__main__":
    main()
