"""tests/ops: the ``backend`` fixture runs a test with the loaded backend and with Triton (on CPU
under Triton's interpreter, which tests/conftest.py turns on without a CUDA device)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from katbench.ops import kernel_backend, use_backend


def _device(item: pytest.Item) -> str:
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("device", "cpu") if callspec else "cpu"


def pytest_collection_modifyitems(config, items):
    """With KATBENCH_BACKEND=triton (no build) and no interpreter, CPU tensors run the reference:
    skip what only the kernels promise there, as under KATBENCH_BACKEND=reference
    (tests/conftest.py)."""
    if (os.environ["KATBENCH_BACKEND"].strip().lower() != "triton"
            or os.environ.get("TRITON_INTERPRET") == "1"):
        return
    skip = pytest.mark.skip(reason="a property of the kernels; KATBENCH_BACKEND=triton serves "
                                   "CPU tensors with the reference")
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_triton = callspec is not None and callspec.params.get("backend") == "triton"
        if "kernels" in item.keywords and _device(item) == "cpu" and not on_triton:
            item.add_marker(skip)


@pytest.fixture(params=["loaded", "triton"])
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """The backend serving the test's ``device`` (CPU when the test has none): the one loaded
    (the compiled kernels in CI), or Triton for the duration of the test."""
    device = _device(request.node)
    if request.param == "loaded":
        yield kernel_backend(device)
        return
    if device == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":  # e.g. a CUDA machine
        pytest.skip("Triton runs CPU tensors only under its interpreter (TRITON_INTERPRET=1)")
    with use_backend("triton", device):
        yield "triton"
