"""Build and load the compiled ``group_rational`` kernels in ``csrc/`` (JIT, cached).

The extension is compiled on first use with ``torch.utils.cpp_extension.load`` (ninja) into a
cache folder keyed by the torch version, the CUDA version and the Python version:
``$KATBENCH_BUILD_DIR`` if set, else ``~/.cache/katbench/build/<key>``. ninja rebuilds only when
a source file changes. ``KATBENCH_CUDA_FLAGS`` adds nvcc flags (the launch-tuning overrides
``-DKATBENCH_<NAME>=value`` that ``python -m katbench.bench tune`` compares) and joins the key.

``KATBENCH_BACKEND`` chooses what runs (see :func:`katbench.ops.load_kernels`): ``auto``
(default: compiled kernels; where no C++ compiler or no CUDA toolkit is found, Triton for CUDA
tensors and the pure-PyTorch reference for the rest, with one warning), ``compiled`` (never fall
back to the reference on CPU: CI sets this), ``triton`` (no build: Triton for CUDA tensors) or
``reference``.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import sys
import sysconfig
from pathlib import Path

import torch

CSRC = Path(__file__).resolve().parents[2] / "csrc"
CUDA_DTYPES = ("float", "double", "half", "bfloat16")  # csrc/group_rational_cuda_<dtype>.cu
BACKENDS = ("auto", "compiled", "triton", "reference")


class ExtensionBuildError(RuntimeError):
    """The C++/CUDA extension failed to compile; the message carries the compiler output."""


def requested_backend() -> str:
    """The backend asked for by ``KATBENCH_BACKEND`` (validated)."""
    backend = os.environ.get("KATBENCH_BACKEND", "auto").strip().lower()
    if backend not in BACKENDS:
        raise ValueError(f"KATBENCH_BACKEND={backend!r} is not one of {BACKENDS}")
    return backend


def build_directory(with_cuda: bool) -> Path:
    """Cache folder for the compiled extension of this torch/CUDA/Python combination."""
    override = os.environ.get("KATBENCH_BUILD_DIR")
    if override:
        path = Path(override)
    else:
        cuda = f"cu{torch.version.cuda}" if with_cuda and torch.version.cuda else "cpu"
        python = f"py{sys.version_info[0]}{sys.version_info[1]}"
        key = f"torch{torch.__version__.split('+')[0]}-{cuda}-{python}-{_cpu_tag()}"
        flags = " ".join(cuda_flags()) if with_cuda else ""
        if flags:
            key += "-" + hashlib.sha1(flags.encode()).hexdigest()[:8]
        path = Path.home() / ".cache" / "katbench" / "build" / key
    path.mkdir(parents=True, exist_ok=True)
    return path


def _cpu_tag() -> str:
    """Short hash of the CPU model: the CPU kernel is built with -march=native."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next((line for line in cpuinfo if line.startswith("flags")), "")
    except OSError:
        model = platform.processor()
    return hashlib.sha1(f"{platform.machine()}{model}".encode()).hexdigest()[:8]


def cuda_flags() -> list[str]:
    """Extra nvcc flags from ``KATBENCH_CUDA_FLAGS`` (whitespace-separated)."""
    return os.environ.get("KATBENCH_CUDA_FLAGS", "").split()


def missing_toolchain(with_cuda: bool) -> str | None:
    """Why the extension cannot be built here (no compiler / no CUDA toolkit), or None."""
    compiler = os.environ.get("CXX") or sysconfig.get_config_var("CXX") or "c++"
    if shutil.which(compiler.split()[0]) is None:
        return f"no C++ compiler found ({compiler!r})"
    if shutil.which("ninja") is None and not _ninja_module_available():
        return "ninja is not installed"
    if with_cuda:
        from torch.utils.cpp_extension import CUDA_HOME
        if CUDA_HOME is None:
            return "no CUDA toolkit (nvcc) found; set CUDA_HOME"
    return None


def _ninja_module_available() -> bool:
    try:
        import ninja  # noqa: F401
    except ImportError:
        return False
    bin_dir = Path(sys.executable).parent
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    return shutil.which("ninja") is not None


def compile_and_load(with_cuda: bool, verbose: bool = False) -> None:
    """Compile (if needed) and load the kernels, registering them under ``katbench::``."""
    from torch.utils.cpp_extension import load

    sources = [CSRC / "group_rational_cpu.cpp", CSRC / "group_rational_autograd.cpp",
               CSRC / "rational_linear.cpp"]
    if with_cuda:
        # The host entry points (C++), then each dtype's kernels in a translation unit of its
        # own: ninja builds them in parallel (up to MAX_JOBS jobs).
        sources += [CSRC / "group_rational_cuda.cpp",
                    *(CSRC / f"group_rational_cuda_{dtype}.cu" for dtype in CUDA_DTYPES)]
    cflags = ["-O3", "-march=native", "-fopenmp"]
    try:
        load(
            name="katbench_group_rational" + ("_cuda" if with_cuda else "_cpu"),
            sources=[str(s) for s in sources],
            extra_include_paths=[str(CSRC)],
            extra_cflags=cflags,
            extra_ldflags=["-fopenmp"],
            extra_cuda_cflags=["-O3", "--expt-relaxed-constexpr", *cuda_flags()],
            build_directory=str(build_directory(with_cuda)),
            is_python_module=False,
            verbose=verbose,
        )
    except (RuntimeError, OSError) as error:
        raise ExtensionBuildError(
            f"building the katbench group_rational kernels failed:\n{error}\n"
            "Fix the toolchain, or set KATBENCH_BACKEND=reference to run the pure-PyTorch "
            "reference instead."
        ) from error
