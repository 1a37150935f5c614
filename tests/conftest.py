"""Test-wide settings: the compiled kernels are required, results go to temporary folders."""

from __future__ import annotations

import os

# The suite tests the C++ kernels: a missing toolchain must fail loudly, not fall back silently.
os.environ.setdefault("KATBENCH_BACKEND", "compiled")


def pytest_collection_modifyitems(config, items):
    """Skip ``cuda``-marked tests without a CUDA device and, under KATBENCH_BACKEND=reference,
    what only the compiled kernels promise (finite results for huge inputs: the reference
    evaluates in the input dtype and may overflow)."""
    import pytest
    import torch

    skips = {}
    if not torch.cuda.is_available():
        skips["cuda"] = pytest.mark.skip(reason="needs a CUDA GPU")
    if os.environ["KATBENCH_BACKEND"].strip().lower() == "reference":
        skips["kernels"] = pytest.mark.skip(reason="a property of the compiled kernels; the "
                                                   "reference backend is selected")
    for item in items:
        for keyword, skip in skips.items():
            if keyword in item.keywords:
                item.add_marker(skip)
