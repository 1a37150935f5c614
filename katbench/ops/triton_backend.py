"""The Triton backend of ``katbench::group_rational``: launch geometry and the op's two kernels
(forward, backward) on the device code of :mod:`katbench.ops.triton_kernels`.

Used for CUDA tensors where no CUDA toolkit can build ``csrc/`` (Triton ships with torch's CUDA
wheels; see :func:`katbench.ops.load_kernels`), and for CPU tensors only under Triton's
interpreter (``TRITON_INTERPRET=1``, read when this module is first imported), where the tests
check the kernels' logic. The backward's grid depends only on the shape and the device (its
multiprocessor count), and its partial sums are added in a fixed order, so gradients are
bitwise identical run to run.
"""

from __future__ import annotations

import contextlib

import torch
import triton
import triton.language as tl

from katbench.ops import triton_kernels as kernels
from katbench.ops.reference import check_arguments

# Launch settings, from a sweep on one H200 (CUDA-event GPU time,
# docs/measurements/h200-2026-12-01c/triton_probe_tune.txt): 2 warps made the forward 16-23%
# faster than 4 at every shape timed; 8 warps with 2 backward programs per multiprocessor (one
# wave: 2 x 256 threads at 128 registers fill the register file, as 4 x 128 did) made the bf16
# backward 7-30% faster and left the fp32 one unchanged.
FORWARD_NUM_WARPS = 2
BACKWARD_NUM_WARPS = 8
FORWARD_PACKS_PER_THREAD = 2  # independent 16-byte loads per thread (forward)
FORWARD_PROGRAMS_PER_SM = 0   # 0: one forward program per row tile; k: a persistent grid of k
                              # per multiprocessor, each loading its coefficients once
BACKWARD_UNROLL = 2           # row tiles loaded together per backward iteration
BACKWARD_PROGRAMS_PER_SM = 2  # (5, 4) backward on sm_90: 96 registers, 128 with a bias or F
REDUCE_BLOCK = 1024           # partials summed at a time by each coefficient's program
BIAS_REDUCE_ROWS, BIAS_REDUCE_BLOCK = 32, 128   # (programs, columns) per step of the bias sums
LARGE_INPUT_CHECK = True      # False: no tile-wide |x| > 4096 test, to time its cost only
                              # (scripts/tune_triton.py --sweep); large inputs then overflow

INTERPRETED = not isinstance(kernels.forward_kernel, triton.runtime.JITFunction)
if INTERPRETED and isinstance(tl.sum, triton.runtime.JITFunction):
    raise ImportError("TRITON_INTERPRET=1 was set after Triton was imported (torch._dynamo "
                      "imports it); set it before the process imports torch")


def _tiling(width: int, group_width: int, element_size: int) -> tuple[int, int]:
    """(VEC, PACKS): 16-byte packs where every group holds whole packs (else single channels),
    and packs per program: the largest power of two <= 32 dividing the width's packs if that is
    at least 8 (no idle lanes at widths such as 192), else the next power of two (masked)."""
    vec = 16 // element_size
    if group_width % vec:
        vec = 1
    packs = width // vec
    divisor = packs & -packs
    return vec, min(32, divisor if divisor >= 8 else triton.next_power_of_2(packs))


def _tile_rows(packs: int, packs_per_thread: int, warps: int) -> int:
    """Rows of a program's tile: ``packs_per_thread`` 16-byte packs per thread of ``warps``;
    under the interpreter, where every step costs milliseconds of Python, at least 16."""
    rows = max(1, warps * 32 * packs_per_thread // packs)
    return max(rows, 16) if INTERPRETED else rows


def _multiprocessors(device: torch.device) -> int:
    """Multiprocessors of a CUDA device (the backward's grid); 1 under the interpreter."""
    if device.type != "cuda":
        return 1
    return torch.cuda.get_device_properties(device).multi_processor_count


def _on_device(x: torch.Tensor) -> contextlib.AbstractContextManager:
    """Triton launches on the current CUDA device: make it x's."""
    return torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext()


class _Problem:
    """One call's (rows, D) geometry, its inputs as the kernels read them and their settings."""

    def __init__(self, x: torch.Tensor, numerator: torch.Tensor, denominator: torch.Tensor,
                 variant: str, bias: torch.Tensor | None) -> None:
        if x.device.type != "cuda" and not INTERPRETED:
            raise RuntimeError(f"the Triton kernels take CUDA tensors, got {x.device}; CPU "
                               "tensors run only under Triton's interpreter (TRITON_INTERPRET=1)")
        check_arguments(x, numerator, denominator, variant, bias)
        self.x = x.contiguous()
        self.width, self.groups = x.shape[-1], denominator.shape[0]
        self.rows = self.x.numel() // self.width if self.width else 0
        self.dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        self.vec, self.packs = _tiling(self.width, self.width // self.groups, x.element_size())
        # Coefficients read in place: unit stride along the order, any stride between groups
        # (0 for a numerator shared by all groups).
        self.num = numerator if numerator.stride(1) == 1 else numerator.contiguous()
        self.den = denominator if denominator.stride(1) == 1 else denominator.contiguous()
        self.bias = None if bias is None else bias.to(self.dtype).contiguous()
        self.m, self.n = numerator.shape[1] - 1, denominator.shape[1]
        self.settings = dict(M=self.m, N=self.n, SUM_ABS=variant == "sum_abs",
                             HAS_BIAS=bias is not None, DOUBLE=self.dtype == torch.float64,
                             VEC=self.vec, PACKS=self.packs, CHECK_LARGE=LARGE_INPUT_CHECK)

    def arguments(self) -> tuple:
        """(coefficients, bias, rows, width, group width, coefficient group strides)."""
        return (self.num, self.den, self.bias, self.rows, self.width, self.width // self.groups,
                self.num.stride(0) if self.num.shape[0] > 1 else 0, self.den.stride(0))

    def column_programs(self) -> int:
        return triton.cdiv(self.width // self.vec, self.packs)


def group_rational_triton(x: torch.Tensor, numerator: torch.Tensor, denominator: torch.Tensor,
                          variant: str = "sum_abs",
                          bias: torch.Tensor | None = None) -> torch.Tensor:
    """``katbench::group_rational`` on Triton: F(x + bias) in ``x.dtype``."""
    problem = _Problem(x, numerator, denominator, variant, bias)
    y = torch.empty_like(problem.x)
    if problem.rows == 0:
        return y
    block_rows = _tile_rows(problem.packs, FORWARD_PACKS_PER_THREAD, FORWARD_NUM_WARPS)
    columns = problem.column_programs()
    tiles = triton.cdiv(problem.rows, block_rows)
    if FORWARD_PROGRAMS_PER_SM:
        tiles = min(tiles, max(1, _multiprocessors(x.device) * FORWARD_PROGRAMS_PER_SM
                               // columns))
    grid = (tiles, columns)
    with _on_device(x):
        kernels.forward_kernel[grid](problem.x, y, *problem.arguments(), BLOCK_R=block_rows,
                                      num_warps=FORWARD_NUM_WARPS, **problem.settings)
    return y


def group_rational_backward_triton(
        grad_output: torch.Tensor, x: torch.Tensor, numerator: torch.Tensor,
        denominator: torch.Tensor, variant: str = "sum_abs", bias: torch.Tensor | None = None,
        output: bool = False) -> tuple[torch.Tensor, ...]:
    """``katbench::group_rational_backward`` on Triton: (dx, d numerator, d denominator,
    d bias, F(x + bias)); d bias is empty without a bias, F unless ``output`` asks for it."""
    problem = _Problem(x, numerator, denominator, variant, bias)
    grad = grad_output.to(x.dtype).contiguous()
    dx = torch.empty_like(problem.x)
    y = torch.empty_like(problem.x) if output else x.new_empty(0)
    empty = x.new_empty(0)
    if problem.rows == 0:
        return (dx, torch.zeros_like(numerator), torch.zeros_like(denominator),
                empty if bias is None else torch.zeros_like(bias), y)
    block_rows = _tile_rows(problem.packs, 1, BACKWARD_NUM_WARPS)
    columns = problem.column_programs()
    programs = min(triton.cdiv(problem.rows, block_rows * BACKWARD_UNROLL),
                   max(1, _multiprocessors(x.device) * BACKWARD_PROGRAMS_PER_SM // columns))
    new = dict(device=x.device, dtype=problem.dtype)
    partial = torch.empty(problem.m + 1 + problem.n, programs, problem.width // problem.vec,
                          **new)
    bias_partial = None if bias is None else torch.empty(programs, problem.width, **new)
    grad_num = torch.empty(numerator.shape, **new)
    grad_den = torch.empty(denominator.shape, **new)
    grad_bias = None if bias is None else torch.empty(problem.width, **new)
    shared = numerator.shape[0] == 1 and problem.groups > 1
    coefficients = (1 if shared else problem.groups) * (problem.m + 1) + problem.groups * problem.n
    bias_programs = 0 if bias is None else triton.cdiv(problem.width, BIAS_REDUCE_BLOCK)
    with _on_device(x):
        kernels.backward_kernel[(programs, columns)](
            grad, problem.x, dx, y if output else None, partial, bias_partial,
            *problem.arguments(), WRITE_Y=output, BLOCK_R=block_rows, UNROLL=BACKWARD_UNROLL,
            **problem.settings)
        kernels.reduce_kernel[(coefficients + bias_programs,)](
            partial, bias_partial, problem.den, grad_num, grad_den, grad_bias, programs,
            problem.width, problem.width // problem.groups // problem.vec, problem.groups,
            problem.den.stride(0), VEC=problem.vec, M=problem.m, N=problem.n,
            SUM_ABS=problem.settings["SUM_ABS"], SHARED_NUMERATOR=shared,
            HAS_BIAS=bias is not None, BLOCK=REDUCE_BLOCK, BIAS_ROWS=BIAS_REDUCE_ROWS,
            BIAS_BLOCK=BIAS_REDUCE_BLOCK)
    return (dx, grad_num.to(numerator.dtype), grad_den.to(denominator.dtype),
            empty if bias is None else grad_bias.to(bias.dtype), y)
