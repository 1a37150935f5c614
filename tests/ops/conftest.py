"""tests/ops: the ``backend`` fixture runs a test with the loaded backend and with Triton (on CPU
under Triton's interpreter, which tests/conftest.py turns on without a CUDA device)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from katbench.ops import kernel_backend, use_backend


@pytest.fixture(params=["loaded", "triton"])
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """The backend serving the test's ``device`` (CPU when the test has none): the one loaded
    (the compiled kernels in CI), or Triton for the duration of the test."""
    device = request.node.callspec.params.get("device", "cpu")
    if request.param == "loaded":
        yield kernel_backend(device)
        return
    with use_backend("triton", device):
        yield "triton"
