"""A CPU stand-in for the KAT block's host cost, and the op's Python wrapper (microseconds).

Forward+backward of the grkan and mlp blocks at tiny widths (16 -> 64, 1 x 2 tokens, one
thread), where the kernels cost next to nothing, in float32 and under bf16 autocast: median of 9
interleaved rounds of 300 steps. Then ``katbench.ops.group_rational`` against the bare op it
wraps, its argument checks and its autocast lookup. Usage: ``python host_proxy.py``.
"""

import statistics
import time
import timeit

import torch

from katbench.mixers import build_mixer
from katbench.ops import autocast_dtype, group_rational, load_kernels
from katbench.ops.reference import check_arguments

torch.set_num_threads(1)
load_kernels()


def block_step(name: str, autocast: bool):
    block = build_mixer(name, 16, 64)
    x = torch.randn(1, 2, 16, requires_grad=True)
    grad = torch.randn(1, 2, 16)
    leaves = [x, *block.parameters()]

    def step() -> None:
        for leaf in leaves:
            leaf.grad = None
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            y = block(x)
        y.backward(grad)
    return step


for autocast in (False, True):
    steps = {name: block_step(name, autocast) for name in ("mlp", "grkan")}
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(9):
        for name, step in steps.items():
            for _ in range(20):
                step()
            start = time.perf_counter()
            for _ in range(300):
                step()
            times[name].append((time.perf_counter() - start) / 300 * 1e6)
    mlp, grkan = (statistics.median(times[n]) for n in ("mlp", "grkan"))
    print(f"block f+b, {'bf16 autocast' if autocast else 'float32'}: mlp {mlp:.0f} us, "
          f"grkan {grkan:.0f} us, ratio {grkan / mlp:.2f}")

x, num, den, bias = torch.randn(2, 16), torch.randn(1, 6), torch.randn(4, 4), torch.randn(16)
op = torch.ops.katbench.group_rational.default
for label, fn in [("group_rational(...)", lambda: group_rational(x, num, den, "sum_abs", bias)),
                  ("bare op", lambda: op(x, num, den, "sum_abs", bias)),
                  ("check_arguments", lambda: check_arguments(x, num, den, "sum_abs", bias)),
                  ("autocast_dtype", lambda: autocast_dtype(x))]:
    print(f"{label}: {min(timeit.repeat(fn, number=20000, repeat=5)) / 20000 * 1e6:.1f} us")
