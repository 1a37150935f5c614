"""Test-wide settings: the compiled kernels are required, results go to temporary folders."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
import torch

# The suite tests the C++ kernels: a missing toolchain must fail loudly, not fall back silently.
os.environ.setdefault("KATBENCH_BACKEND", "compiled")
# Without a CUDA device, the Triton kernels run CPU tensors under Triton's interpreter (tests/ops
# checks the Triton backend there); Triton reads this when first imported (torch._dynamo does).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_collection_modifyitems(config, items):
    """Skip ``cuda``-marked tests without a CUDA device and, under KATBENCH_BACKEND=reference,
    what only the compiled kernels promise (finite results for huge inputs: the reference
    evaluates in the input dtype and may overflow)."""
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


@pytest.fixture(scope="session")
def require() -> Callable[[bool, str], None]:
    """``require(ok, reason)``: skip the test unless ``ok``. Under
    ``KATBENCH_CLUSTER_TESTS=require`` (set by .ci/run) it fails instead, so that CI cannot pass
    by skipping the SLURM and tracking-server tests."""
    def check(ok: bool, reason: str) -> None:
        if ok:
            return
        if os.environ.get("KATBENCH_CLUSTER_TESTS") == "require":
            pytest.fail(f"{reason} (KATBENCH_CLUSTER_TESTS=require)")
        pytest.skip(reason)
    return check


@pytest.fixture
def saved_bytes() -> Callable[[Callable[[], object]], int]:
    """``saved_bytes(fn)``: bytes of the distinct storages autograd keeps for ``fn()``'s
    backward (parameters included): the activation memory a layer holds."""
    def measure(fn: Callable[[], object]) -> int:
        saved: dict[int, int] = {}

        def pack(t: torch.Tensor) -> torch.Tensor:
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            fn()
        return sum(saved.values())
    return measure


@pytest.fixture
def output_and_gradients() -> Callable[..., list[torch.Tensor]]:
    """``output_and_gradients(layer, x, autocast=False)``: ``[y, dx, *d parameters]`` of one
    backward of a fixed ramp through ``layer(x)`` (under bf16 autocast on x's device if asked)."""
    def run(layer: torch.nn.Module, x: torch.Tensor, autocast: bool = False) -> list[torch.Tensor]:
        x = x.detach().requires_grad_()
        layer.zero_grad(set_to_none=True)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=autocast):
            y = layer(x)
        y.backward(torch.linspace(-1, 1, y.numel(), device=y.device).view_as(y).to(y.dtype))
        return [y, x.grad, *(p.grad for p in layer.parameters())]
    return run
