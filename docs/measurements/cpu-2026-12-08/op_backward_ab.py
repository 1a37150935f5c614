"""The op's CPU backward against GELU's at x = [16, 256, 512] float32, g = 8 (milliseconds).

Usage: ``python op_backward_ab.py CHECKOUT``, CHECKOUT being the folder whose katbench must be
the one imported (it stops otherwise): ``PYTHONPATH=/tmp/old KATBENCH_BUILD_DIR=/tmp/build_old
python op_backward_ab.py /tmp/old`` for a worktree of the parent commit.
"""

import sys
import timeit

import torch

import katbench
from katbench.ops import group_rational, load_kernels

assert sys.argv[1] in katbench.__file__, katbench.__file__
load_kernels()
torch.manual_seed(0)
x = torch.randn(16, 256, 512)
g = torch.randn_like(x)
num, den = torch.randn(1, 6) * 0.3, torch.randn(8, 4) * 0.3
backward = torch.ops.katbench.group_rational_backward.default
leaves = [t.clone().requires_grad_() for t in (x, num, den)]


def step() -> None:
    for leaf in leaves:
        leaf.grad = None
    group_rational(*leaves, "sum_abs").backward(g)


out = []
for label, fn in [("bwd sum_abs", lambda: backward(g, x, num, den, "sum_abs", None, False)),
                  ("bwd abs_sum", lambda: backward(g, x, num, den, "abs_sum", None, False)),
                  ("fwd+bwd autograd", step),
                  ("gelu fwd+bwd", lambda: torch.nn.functional.gelu(leaves[0]).backward(g))]:
    fn()
    out.append(f"{label} {min(timeit.repeat(fn, number=5, repeat=7)) / 5 * 1e3:.2f}")
print(sys.argv[1][:9], " | ".join(out))
