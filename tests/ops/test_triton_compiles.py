"""The Triton kernels compile for a GPU (sm_90) without one: errors of Triton's code generator
that its CPU interpreter, which the other tests use, does not raise."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("triton")

COMPILE = textwrap.dedent("""
    import triton
    from triton.backends.compiler import GPUTarget
    from katbench.ops import triton_kernels as k

    def compile_(kernel, signature, constants):
        # the run-time specialisation: 16-byte aligned pointers, widths divisible by 16; an
        # argument passed as None (no bias, no written F) is a constexpr, as at run time
        attrs = {(kernel.arg_names.index(name),): [["tt.divisibility", 16]]
                 for name, kind in signature.items()
                 if kind.startswith("*") or name in ("width", "group_width", "den_stride")}
        source = triton.compiler.ASTSource(
            fn=kernel, signature={name: signature.get(name, "constexpr")
                                  for name in kernel.arg_names},
            constexprs=constants, attrs=attrs)
        triton.compile(source, target=GPUTarget("cuda", 90, 32))

    def typed(names, kind):
        return {name: kind for name in names.split()}

    def present(names, kind, keep):
        return typed(names, kind) if keep else {}

    def absent(names, keep):
        return {} if keep else {name: None for name in names.split()}

    sizes = typed("rows width group_width num_stride den_stride", "i32")
    # (inputs, coefficients and partials, float64 arithmetic, bias, written F, large-input test)
    cases = [("*bf16", "*fp32", False, True, True, True),
             ("*bf16", "*fp32", False, False, False, False),
             ("*fp64", "*fp64", True, True, False, True)]
    for data, wide, double, bias, write_y, check in cases:
        settings = dict(M=5, N=4, SUM_ABS=False, HAS_BIAS=bias, DOUBLE=double, VEC=8, PACKS=32,
                        CHECK_LARGE=check)
        compile_(k.forward_kernel,
                 {**typed("x_ptr y_ptr", data), **typed("num_ptr den_ptr", wide),
                  **present("bias_ptr", wide, bias), **sizes},
                 dict(settings, BLOCK_R=8, **absent("bias_ptr", bias)))
        compile_(k.backward_kernel,
                 {**typed("grad_ptr x_ptr dx_ptr", data), **present("y_ptr", data, write_y),
                  **typed("partial_ptr num_ptr den_ptr", wide),
                  **present("bias_partial_ptr bias_ptr", wide, bias), **sizes},
                 dict(settings, WRITE_Y=write_y, BLOCK_R=4, UNROLL=2,
                      **absent("y_ptr", write_y), **absent("bias_partial_ptr bias_ptr", bias)))
        for shared in (True, False):
            compile_(k.reduce_kernel,
                     {**typed("partial_ptr den_ptr grad_num_ptr grad_den_ptr", wide),
                      **present("bias_partial_ptr grad_bias_ptr", wide, bias),
                      **typed("programs width packs_per_group groups den_stride", "i32")},
                     dict(VEC=8, M=5, N=4, SUM_ABS=True, SHARED_NUMERATOR=shared,
                          HAS_BIAS=bias, BLOCK=1024, BIAS_ROWS=32, BIAS_BLOCK=128,
                          **absent("bias_partial_ptr grad_bias_ptr", bias)))
    print("compiled")
""")


def test_forward_backward_and_reduction_compile_for_sm90():
    """bf16 with and without a bias and a written F (their pointers then None) and the
    large-input test, and float64."""
    result = subprocess.run([sys.executable, "-c", COMPILE], capture_output=True, text=True,
                            env={**os.environ, "TRITON_INTERPRET": "0"}, timeout=600)
    assert result.returncode == 0 and "compiled" in result.stdout, result.stderr[-3000:]
