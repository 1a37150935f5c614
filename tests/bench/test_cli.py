"""The benchmark command line runs end to end on CPU and writes its tables."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from katbench.bench.__main__ import main
from katbench.mixers import MIXERS


def test_op_benchmark_writes_csv_png_and_ratios(tmp_path, capsys):
    assert main(["op", "--device", "cpu", "--shape", "4", "8", "--headline", "4", "64",
                 "--groups", "1", "4", "--widths", "64", "--impls", "ours", "triton",
                 "vectorised", "looped", "gelu", "clone", "--min-run-time", "0.01", "--out",
                 str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "fwd+bwd: ours / gelu" in out and "forward: ours / clone" in out
    assert "triton: skipped (the Triton kernels are timed on CUDA devices only)" in out
    frame = pd.read_csv(tmp_path / "op_cpu.csv")
    assert set(frame.impl) == {"ours", "vectorised", "looped", "gelu", "clone"}
    assert (frame.ms > 0).all() and set(frame.groups) == {1, 4}
    assert (tmp_path / "op_cpu.png").stat().st_size > 10_000
    table7 = pd.read_csv(tmp_path / "table7_cpu.csv")  # the activations asked for, at headline
    assert set(table7.activation) == {"GR-KAN", "GELU"} and (table7.batches_per_s > 0).all()
    assert (tmp_path / "table7_cpu.png").stat().st_size > 5_000


@pytest.mark.parametrize("recompute", [[], ["--recompute", "both"]])
def test_block_benchmark_times_every_mixer_against_mlp(capsys, recompute):
    assert main(["block", "--device", "cpu", "--sizes", "T", "--tokens", "2", "8",
                 "--min-run-time", "0.01", *recompute]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert "grkan with recompute=" + (recompute[-1] if recompute else "first") in out[0]
    assert out[1] == ("grkan[triton]: skipped (the Triton kernels are timed on CUDA devices "
                      "only)")
    header, *rows = (row.split() for row in out[2:])
    assert header == ["size", "mixer", "ms", "time/mlp", "MiB", "mem/mlp", "GPU/mlp"]
    assert [r[1] for r in rows] == list(MIXERS)          # every registered mixer, mlp first
    assert all(r[0] == "T" and float(r[2]) > 0 for r in rows)
    assert rows[0][3] == "1.00" and all(float(r[3]) > 0 for r in rows)
    assert all(r[-1] == "-" for r in rows)  # GPU kernel time: CUDA only


def test_block_benchmark_takes_a_subset_of_mixers(capsys):
    assert main(["block", "--device", "cpu", "--sizes", "T", "--tokens", "1", "4",
                 "--min-run-time", "0.01", "--mixers", "swiglu", "pau"]) == 0
    rows = [r.split() for r in capsys.readouterr().out.strip().splitlines()[2:]]
    assert [r[1] for r in rows] == ["mlp", "swiglu", "pau"]


def test_model_benchmark_ratios_to_first(tmp_path, capsys):
    out = tmp_path / "tp.json"
    assert main(["model", "vit_tiny_patch16_224", "kat_tiny_patch16_224", "--device", "cpu",
                 "--batch-size", "2", "--img-size", "32", "--steps", "1", "--warmup", "1",
                 "--rounds", "3", "--modes", "eager", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["model"] for r in rows] == ["vit_tiny_patch16_224"] * 2 + ["kat_tiny_patch16_224"] * 2
    assert rows[0]["ratio"] == 1.0 and rows[2]["ratio_min"] <= rows[2]["ratio"] <= rows[2][
        "ratio_max"]
    for row in rows:  # the median of three interleaved rounds
        assert len(row["images_per_s_rounds"]) == 3
        assert row["images_per_s"] == sorted(row["images_per_s_rounds"])[1]
    assert "THROUGHPUT ONLY" in capsys.readouterr().out


@pytest.mark.cuda
def test_triton_rows_beside_the_loaded_kernels_on_cuda(tmp_path, capsys):
    assert main(["op", "--shape", "4", "256", "--no-sweep", "--dtypes", "bfloat16", "--impls",
                 "ours", "triton", "gelu", "clone", "--min-run-time", "0.01", "--out",
                 str(tmp_path)]) == 0
    frame = pd.read_csv(next(tmp_path.glob("op_*.csv")))
    assert {"ours", "triton"} <= set(frame.impl) and (frame.gpu_us > 0).all()
    assert "fwd+bwd: triton / ours" in capsys.readouterr().out
    assert main(["block", "--sizes", "T", "--tokens", "2", "8", "--min-run-time", "0.01",
                 "--mixers", "mlp", "grkan"]) == 0
    rows = [r.split()[1] for r in capsys.readouterr().out.strip().splitlines()[2:]]
    assert rows == ["mlp", "grkan", "grkan[triton]"]
