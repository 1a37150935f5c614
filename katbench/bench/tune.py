"""``python -m katbench.bench tune``: compare launch settings of the CUDA kernels, side by side.

A variant is a set of overrides of the launch constants in ``csrc/group_rational_cuda.cuh``
(``"BLOCKS_PER_SM=8 MIN_BLOCKS=2"`` becomes ``-DKATBENCH_BLOCKS_PER_SM=8 -DKATBENCH_MIN_BLOCKS=2``,
passed through ``KATBENCH_CUDA_FLAGS``). Every variant is compiled at once, each into its own
build folder, then timed in its own process (an op registers once per process) on the same
shapes together with ``x.clone()`` and GELU measured in that process, so each variant's ratios
to the memory floor are side by side. The empty variant is the compiled-in default.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from katbench.bench.op import DTYPES, activations, measure
from katbench.ops import group_rational
from katbench.ops.reference import group_rational_reference

# The default first; FORWARD_STAGES=2 was the default until measured on an H200 (3 won there).
DEFAULT_VARIANTS = ("", "FORWARD_STAGES=2", "BLOCKS_PER_SM=8 RESIDENT_BLOCKS_PER_SM=8",
                    "BLOCKS_PER_SM=32", "RESIDENT_BLOCKS_PER_SM=2",
                    "FORWARD_STAGES=0 BACKWARD_STAGES=0", "BACKWARD_BLOCKS_PER_SM=6",
                    "THREADS_PER_BLOCK=128")
# (label, leading dims, width, groups): the paper's op shape and KAT-T's two rationals (the
# block's input, 192 wide, and its hidden activation, 768 wide).
SHAPES = (("64x1000x512", (64, 1000), 512, 8), ("ViT-T input", (128, 197), 192, 8),
          ("ViT-T hidden", (128, 197), 768, 8))


def variant_flags(variant: str) -> list[str]:
    """``"NAME=value ..."`` -> ``["-DKATBENCH_NAME=value", ...]`` (validated)."""
    flags = []
    for item in variant.split():
        name, _, value = item.partition("=")
        if not name.isidentifier() or not value.isdigit():
            raise ValueError(f"bad tuning override {item!r}; write NAME=integer, e.g. "
                             "BLOCKS_PER_SM=8")
        flags.append(f"-DKATBENCH_{name.upper()}={value}")
    return flags


def variant_env(variant: str, build_root: Path) -> dict[str, str]:
    """Environment that builds and loads ``variant`` from its own folder under ``build_root``."""
    slug = "default" if not variant else "_".join(variant.split()).replace("=", "")
    return {**os.environ, "KATBENCH_BACKEND": "compiled",
            "KATBENCH_CUDA_FLAGS": " ".join(variant_flags(variant)),
            "KATBENCH_BUILD_DIR": str(build_root / slug)}


def relative_error(dtype: torch.dtype, device: torch.device,
                   shape: tuple[int, ...] = (37, 197, 768), groups: int = 8) -> float:
    """Largest ``||ours - ref|| / ||ref||`` over y, dx and both coefficient gradients.

    ``ref`` is the float64 reference on the same (rounded) inputs; the default row count
    (37 x 197) is no multiple of any launch's row step, so tail rows are checked too.
    """
    x = torch.randn(*shape, device=device, dtype=dtype)
    grad = torch.randn_like(x)
    numerator = torch.randn(1, 6, device=device)
    denominator = torch.rand(groups, 4, device=device) - 0.5
    results = []
    for reference in (False, True):
        leaves = [t.detach().clone().to(torch.float64 if reference else t.dtype).requires_grad_()
                  for t in (x, numerator, denominator)]
        fn = group_rational_reference if reference else group_rational
        y = fn(*leaves, "sum_abs")
        y.backward(grad.to(y.dtype))
        results.append([y.detach(), *(leaf.grad for leaf in leaves)])
    return max(float((ours.double() - ref).norm() / ref.norm())
               for ours, ref in zip(*results, strict=True))


def time_variant(dtypes: list[str], min_run_time: float) -> list[dict]:
    """Time ours, clone and GELU at :data:`SHAPES` in this process (the worker's job).

    ``*_ms`` are wall times; the ratios use GPU kernel time (:func:`gpu_busy_us`), which is
    what launch settings change and is free of host-overhead noise.
    """
    device = torch.device("cuda")
    table = activations("sum_abs")
    rows = []
    for dtype_name in dtypes:
        error = relative_error(DTYPES[dtype_name], device)
        for label, leading, width, groups in SHAPES:
            wall, busy = {}, {}
            for impl, mode in (("clone", "forward"), ("gelu", "forward+backward"),
                               ("ours", "forward"), ("ours", "forward+backward")):
                m = measure(impl, table[impl], mode, (*leading, width), groups,
                            DTYPES[dtype_name], device, min_run_time, gpu_time=True)
                wall[(impl, mode)], busy[(impl, mode)] = m.ms, m.gpu_us
            rows.append({"dtype": dtype_name, "shape": label,
                         "fwd_ms": wall[("ours", "forward")],
                         "fwd_bwd_ms": wall[("ours", "forward+backward")],
                         "fwd_vs_clone": busy[("ours", "forward")] / busy[("clone", "forward")],
                         "fwd_bwd_vs_gelu": busy[("ours", "forward+backward")]
                         / busy[("gelu", "forward+backward")], "error": error})
    return rows


def run_tuning(variants: list[str], dtypes: list[str], min_run_time: float,
               build_root: Path) -> list[str]:
    """Build all variants in parallel, time each in a subprocess; return the printable table."""
    builds = {v: subprocess.Popen(
        [sys.executable, "-c", "from katbench.ops import load_kernels; load_kernels()"],
        env=variant_env(v, build_root), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True) for v in variants}
    failed = {}
    for variant, process in builds.items():
        output, _ = process.communicate()
        if process.returncode:
            failed[variant] = output.strip().splitlines()[-1:] or ["(no output)"]
    lines = [f"{'variant':32s} {'dtype':9s} {'shape':13s} {'fwd ms':>8s} {'f+b ms':>8s} "
             f"{'fwd/clone':>9s} {'f+b/gelu':>9s} {'error':>8s}  (ms: wall; ratios: GPU kernel "
             "time; error: largest relative error of y and the gradients against float64)"]
    print(lines[0], flush=True)
    for variant in variants:
        label = variant or "(default)"
        if variant in failed:
            lines.append(f"{label:32s} build failed: {failed[variant][0]}")
            print(lines[-1], flush=True)
            continue
        worker = subprocess.run(
            [sys.executable, "-m", "katbench.bench", "tune", "--worker", "--dtypes", *dtypes,
             "--min-run-time", str(min_run_time)],
            env=variant_env(variant, build_root), capture_output=True, text=True)
        if worker.returncode:
            lines.append(f"{label:32s} failed: {worker.stderr.strip().splitlines()[-1:]}")
            print(lines[-1], flush=True)
            continue
        for row in json.loads(worker.stdout.strip().splitlines()[-1]):
            lines.append(f"{label:32s} {row['dtype']:9s} {row['shape']:13s} "
                         f"{row['fwd_ms']:8.4f} {row['fwd_bwd_ms']:8.4f} "
                         f"{row['fwd_vs_clone']:9.2f} {row['fwd_bwd_vs_gelu']:9.2f} "
                         f"{row['error']:8.1e}")
            print(lines[-1], flush=True)
    return lines
