"""Which backend serves group_rational (KATBENCH_BACKEND, the toolchain, Triton), the one line
that says so, and use_backend's switch and its errors."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import katbench.ops
from katbench.ops import group_rational, kernel_backend, use_backend

LOAD = textwrap.dedent("""
    import warnings
    warnings.simplefilter("always")
    from katbench.ops import load_kernels
    print(load_kernels())
""")


def load_in_subprocess(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """load_kernels() in a fresh process (the choice is made once per process)."""
    environment = {**os.environ, "KATBENCH_BUILD_DIR": str(tmp_path / "build"), **env}
    return subprocess.run([sys.executable, "-c", LOAD], capture_output=True, text=True,
                          env=environment, timeout=600)


def test_auto_without_a_compiler_says_which_backend_and_why(tmp_path):
    result = load_in_subprocess(tmp_path, KATBENCH_BACKEND="auto", CXX="/nonexistent/c++")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "'cpu': 'reference'" in result.stdout
    lines = [line for line in result.stderr.splitlines() if "katbench:" in line]
    assert len(lines) == 1
    assert ("no C++ compiler found ('/nonexistent/c++'); group_rational: CPU tensors use the "
            "slower pure-PyTorch reference") in lines[0]


def test_triton_builds_nothing_and_needs_the_interpreter_for_cpu(tmp_path):
    result = load_in_subprocess(tmp_path, KATBENCH_BACKEND="triton", TRITON_INTERPRET="0")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "'cpu': 'reference'" in result.stdout and "katbench:" not in result.stderr
    if torch.cuda.is_available():
        assert "'cuda': 'triton'" in result.stdout
    assert not (tmp_path / "build").exists()  # no build folder: nothing compiled


@pytest.mark.parametrize("requested,missing,expected", [
    ("auto", None, "triton"),                # no CUDA toolkit: Triton
    ("auto", "Triton does not import", "reference"),
    ("compiled", None, "triton"),            # compiled on CPU; CUDA without a toolkit as auto
    ("reference", None, "reference"),
])
def test_cuda_tensors_without_a_toolkit(monkeypatch, requested, missing, expected):
    monkeypatch.setattr(katbench.ops, "_triton_missing", lambda: missing)
    assert katbench.ops._fallback(requested, "cuda") == expected


def test_forced_triton_without_triton_names_the_fix(monkeypatch):
    monkeypatch.setattr(katbench.ops, "_triton_missing", lambda: "Triton does not import (x)")
    with pytest.raises(RuntimeError, match="KATBENCH_BACKEND=triton but Triton does not import"):
        katbench.ops._fallback("triton", "cuda")


def test_use_backend_switches_and_restores():
    before = kernel_backend("cpu")
    x = torch.randn(4, 16)
    num, den = torch.randn(1, 6), torch.rand(4, 4)
    with use_backend("reference", "cpu"):
        assert kernel_backend("cpu") == "reference"
        torch.testing.assert_close(group_rational(x, num, den),
                                   katbench.ops.group_rational_reference(x, num, den))
    assert kernel_backend("cpu") == before


@pytest.mark.parametrize("backend,device,match", [
    ("cuda_kernels", "cpu", "not one of"),
    pytest.param("triton", "cuda", "no cuda device here", marks=pytest.mark.skipif(
        torch.cuda.is_available(), reason="needs a machine without CUDA")),
])
def test_use_backend_errors(backend, device, match):
    with pytest.raises(ValueError, match=match), use_backend(backend, device):
        pass
