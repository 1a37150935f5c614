"""Test-wide settings: the compiled kernels are required, results go to temporary folders."""

from __future__ import annotations

import os

# The suite tests the C++ kernels: a missing toolchain must fail loudly, not fall back silently.
os.environ.setdefault("KATBENCH_BACKEND", "compiled")
