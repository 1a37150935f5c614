"""Throughput measurement runs and reports consistent numbers (CPU, tiny model)."""

from __future__ import annotations

import pytest

from katbench.bench.model import measure_throughput
from katbench.models.vit import vit_mixer


def test_measure_train_and_inference_cpu():
    model = vit_mixer("grkan", img_size=16, patch_size=4, num_classes=5, in_chans=3,
                      embed_dim=32, depth=1, num_heads=2)
    before = [p.detach().clone() for p in model.parameters()]
    train = measure_throughput(model, train=True, batch_size=4, img_size=16, steps=2, warmup=1,
                               device="cpu")
    assert any(not p.equal(b) for p, b in zip(model.parameters(), before, strict=True))
    infer = measure_throughput(model, train=False, batch_size=4, img_size=16, steps=2, warmup=1,
                               device="cpu")
    for row, mode in ((train, "train"), (infer, "inference")):
        assert row["mode"] == mode and row["peak_memory_mb"] is None and not row["amp"]
        assert row["images_per_s"] == pytest.approx(4 * 1000 / row["step_ms"])


def _tiny_model():
    return vit_mixer("grkan", img_size=16, patch_size=4, num_classes=5, in_chans=3,
                     embed_dim=32, depth=1, num_heads=2)


def test_cuda_graph_needs_cuda_and_no_compile():
    with pytest.raises(ValueError, match="cuda_graph needs a CUDA device"):
        measure_throughput(_tiny_model(), train=True, device="cpu", cuda_graph=True)


@pytest.mark.cuda
@pytest.mark.parametrize("train", [True, False])
def test_cuda_graph_replays_train_and_inference_steps(train):
    model = _tiny_model()
    before = [p.detach().clone().cuda() for p in model.parameters()]
    row = measure_throughput(model, train=train, batch_size=4, img_size=16, steps=3, warmup=1,
                             device="cuda", cuda_graph=True)
    changed = any(not p.equal(b) for p, b in zip(model.parameters(), before, strict=True))
    assert row["cuda_graph"] and changed == train and row["images_per_s"] > 0
