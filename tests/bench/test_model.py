"""Throughput measurement runs and reports consistent numbers (CPU, tiny model)."""

from __future__ import annotations

import pytest

import katbench.ops
from katbench.bench.model import format_table, measure_throughput, split_backend, throughput_rows
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


def test_interleaved_rounds_give_median_ratio_and_range():
    models = {"a": _tiny_model(), "b": _tiny_model()}
    rows = throughput_rows(models, rounds=3, modes=("eager",), batch_sizes=(2, 4), img_size=16,
                           steps=1, warmup=1, device="cpu")
    assert len(rows) == 2 * 2 * 2  # batch sizes x models x phases
    for row in rows:
        assert row["setting"] == "eager" and len(row["images_per_s_rounds"]) == 3
        assert row["ratio_min"] <= row["ratio"] <= row["ratio_max"]
        if row["model"] == "a":
            assert row["ratio"] == row["ratio_min"] == row["ratio_max"] == 1.0
        else:
            first = next(r for r in rows if r["model"] == "a" and r["mode"] == row["mode"]
                         and r["batch_size"] == row["batch_size"])
            ratios = [b / a for a, b in zip(first["images_per_s_rounds"],
                                            row["images_per_s_rounds"], strict=True)]
            assert row["ratio"] == pytest.approx(sorted(ratios)[1])
    lines = format_table(rows)
    assert len(lines) == 1 + len(rows) and lines[1].split()[:3] == ["eager", "b2", "train"]


def test_unknown_mode_is_named():
    with pytest.raises(ValueError, match=r"unknown mode\(s\) \['jit'\]; choose from"):
        throughput_rows({"a": _tiny_model()}, modes=("jit",), device="cpu")


def test_a_backend_suffix_runs_that_model_on_that_backend(monkeypatch):
    calls = []

    def counted(*args, **kwargs):
        calls.append(1)
        return reference(*args, **kwargs)

    reference = katbench.ops.group_rational_reference
    monkeypatch.setattr(katbench.ops, "group_rational_reference", counted)
    models = {"kat": _tiny_model(), "kat[reference]": _tiny_model()}
    options = dict(rounds=1, modes=("eager",), batch_sizes=(2,), img_size=16, steps=1, warmup=1,
                   device="cpu")
    throughput_rows({"kat": models["kat"]}, **options)
    assert not calls and katbench.ops.kernel_backend("cpu") == "compiled"
    rows = throughput_rows(models, backends={"kat[reference]": "reference"}, **options)
    assert calls and katbench.ops.kernel_backend("cpu") == "compiled"   # restored
    assert {row["model"] for row in rows} == {"kat", "kat[reference]"}


def test_backend_suffixes_are_parsed_and_unknown_ones_named():
    assert split_backend("kat_tiny_patch16_224") == ("kat_tiny_patch16_224", None)
    assert split_backend("kat_tiny_patch16_224[triton]") == ("kat_tiny_patch16_224", "triton")
    with pytest.raises(ValueError, match=r"kat_tiny\[cuda\]: unknown op backend 'cuda'; use "
                                         r"kat_tiny\[triton\] or kat_tiny\[reference\]"):
        split_backend("kat_tiny[cuda]")
