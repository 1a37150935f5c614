"""The Triton backend's launch settings and host cost on a CUDA machine (issue 24).

1. Host cost at [128, 197, 768] bf16: microseconds of host time per forward launch, per
   backward (two launches) and per forward+backward through the op and its autograd, with the
   backend loaded (run it under ``KATBENCH_BACKEND=triton`` for the toolkit-less path, where a
   cProfile of that loop follows).
2. With ``--sweep`` (needs the compiled CUDA kernels for the reference rows): GPU kernel time
   per call (``torch.profiler``, host gaps excluded) of the Triton forward and backward at each
   launch setting of ``katbench/ops/triton_backend.py``, one factor at a time, beside the CUDA
   kernels and clone.

    KATBENCH_BACKEND=triton python scripts/tune_triton.py
    python scripts/tune_triton.py --sweep
"""

from __future__ import annotations

import argparse
import cProfile
import pstats

import torch

from katbench.bench.timing import gpu_busy_us, host_issue_us
from katbench.ops import group_rational, load_kernels
from katbench.ops import triton_backend as tb

SETTINGS = ("FORWARD_NUM_WARPS", "BACKWARD_NUM_WARPS", "FORWARD_PACKS_PER_THREAD",
            "FORWARD_PROGRAMS_PER_SM", "BACKWARD_UNROLL", "BACKWARD_PROGRAMS_PER_SM",
            "LARGE_INPUT_CHECK")
VARIANTS = [{}] + [{"FORWARD_NUM_WARPS": w} for w in (1, 4)] + \
    [{"BACKWARD_NUM_WARPS": w} for w in (4, 16)] + \
    [{"FORWARD_PACKS_PER_THREAD": p} for p in (1, 4)] + \
    [{"FORWARD_PROGRAMS_PER_SM": k} for k in (8, 16, 32)] + \
    [{"FORWARD_PROGRAMS_PER_SM": k, "FORWARD_PACKS_PER_THREAD": 1} for k in (16, 32)] + \
    [{"BACKWARD_UNROLL": u} for u in (1, 4)] + \
    [{"BACKWARD_PROGRAMS_PER_SM": s} for s in (1, 4)] + \
    [{"LARGE_INPUT_CHECK": False}]   # what the tile-wide large-input test costs
SHAPES = [((64, 1000, 512), torch.float32), ((64, 1000, 512), torch.bfloat16),
          ((128, 197, 768), torch.bfloat16), ((128, 197, 3072), torch.bfloat16)]


def inputs(shape: tuple[int, ...], dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """x, numerator (shared), denominator (8 groups) and an upstream gradient."""
    x = torch.randn(*shape, device="cuda", dtype=dtype)
    numerator = torch.randn(1, 6, device="cuda") * 0.3
    denominator = torch.randn(8, 4, device="cuda") * 0.3
    return x, numerator, denominator, torch.randn_like(x)


def host_cost() -> None:
    """Print the host time of the launches and of a forward+backward through autograd."""
    x, num, den, grad = inputs((128, 197, 768), torch.bfloat16)
    forward = host_issue_us(lambda: tb.group_rational_triton(x, num, den))
    backward = host_issue_us(lambda: tb.group_rational_backward_triton(grad, x, num, den))
    print(f"host us per call at [128, 197, 768] bf16: Triton forward {forward:.1f}, "
          f"backward {backward:.1f}")
    leaf, num, den = (t.detach().requires_grad_() for t in (x, num, den))

    def step() -> None:
        group_rational(leaf, num, den).backward(grad)

    backend = load_kernels()["cuda"]
    print(f"op forward+backward through autograd ({backend}): host us {host_issue_us(step):.1f}, "
          f"GPU kernel us {gpu_busy_us(step):.1f}")
    if backend == "triton":
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(200):
            step()
        torch.cuda.synchronize()
        profile.disable()
        pstats.Stats(profile).sort_stats("tottime").print_stats(20)


def sweep_shape(shape: tuple[int, ...], dtype: torch.dtype, defaults: dict[str, int]) -> None:
    """Print one shape's rows: every variant of the launch settings, then restore them."""
    x, num, den, grad = inputs(shape, dtype)
    cuda = (gpu_busy_us(lambda: torch.ops.katbench.group_rational(x, num, den, "sum_abs", None))
            + gpu_busy_us(lambda: torch.ops.katbench.group_rational_backward(
                grad, x, num, den, "sum_abs", None, False)))
    clone = gpu_busy_us(x.clone)
    try:
        for variant in VARIANTS:
            for name, value in {**defaults, **variant}.items():
                setattr(tb, name, value)
            forward = gpu_busy_us(lambda: tb.group_rational_triton(x, num, den))
            backward = gpu_busy_us(lambda: tb.group_rational_backward_triton(grad, x, num, den))
            print(f"{shape} {dtype} | {variant or 'defaults'} | {forward:.1f} {backward:.1f} | "
                  f"{forward / clone:.2f} {(forward + backward) / cuda:.2f}", flush=True)
    finally:
        for name, value in defaults.items():
            setattr(tb, name, value)


def sweep() -> None:
    """Print the Triton kernels' GPU time at every variant of the launch settings."""
    defaults = {name: getattr(tb, name) for name in SETTINGS}
    print("shape dtype | setting | forward backward (GPU kernel us) | forward/clone, "
          "forward+backward / CUDA kernels")
    for shape, dtype in SHAPES:
        sweep_shape(shape, dtype, defaults)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", action="store_true",
                        help="also time every launch-setting variant (needs the CUDA kernels)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("tune_triton.py: needs a CUDA GPU (Triton runs CPU tensors only under "
                         "its interpreter, which times Python)")
    print(load_kernels(), flush=True)
    host_cost()
    if args.sweep:
        sweep()


if __name__ == "__main__":
    main()
