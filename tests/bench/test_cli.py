"""The benchmark command line runs end to end on CPU and writes its tables."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from katbench.bench.__main__ import main


def test_op_benchmark_writes_csv_png_and_ratios(tmp_path, capsys):
    assert main(["op", "--device", "cpu", "--shape", "4", "8", "--headline", "4", "64",
                 "--groups", "1", "4", "--widths", "64", "--impls", "ours", "vectorised",
                 "looped", "gelu", "clone", "--min-run-time", "0.01", "--out",
                 str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "fwd+bwd: ours / gelu" in out and "forward: ours / clone" in out
    frame = pd.read_csv(tmp_path / "op_cpu.csv")
    assert set(frame.impl) == {"ours", "vectorised", "looped", "gelu", "clone"}
    assert (frame.ms > 0).all() and set(frame.groups) == {1, 4}
    assert (tmp_path / "op_cpu.png").stat().st_size > 10_000
    table7 = pd.read_csv(tmp_path / "table7_cpu.csv")  # the activations asked for, at headline
    assert set(table7.activation) == {"GR-KAN", "GELU"} and (table7.batches_per_s > 0).all()
    assert (tmp_path / "table7_cpu.png").stat().st_size > 5_000


@pytest.mark.parametrize("recompute", [[], ["--recompute", "first"], ["--recompute", "both"]])
def test_block_benchmark_prints_ratios(capsys, recompute):
    assert main(["block", "--device", "cpu", "--sizes", "T", "--tokens", "2", "8",
                 "--min-run-time", "0.01", *recompute]) == 0
    header, line = (row.split() for row in capsys.readouterr().out.strip().splitlines()[-2:])
    assert header[0] == "size" and header[-2:] == ["GPU", "ratio"]
    assert line[0] == "T" and float(line[3]) > 0  # time ratio grkan / mlp
    assert line[-1] == "-"  # GPU kernel time: CUDA only


def test_model_benchmark_ratios_to_first(tmp_path, capsys):
    out = tmp_path / "tp.json"
    assert main(["model", "vit_tiny_patch16_224", "kat_tiny_patch16_224", "--device", "cpu",
                 "--batch-size", "2", "--img-size", "32", "--steps", "1", "--warmup", "1",
                 "--rounds", "3", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["model"] for r in rows] == ["vit_tiny_patch16_224"] * 2 + ["kat_tiny_patch16_224"] * 2
    assert rows[0]["ratio_to_first"] == 1.0 and rows[2]["ratio_to_first"] > 0
    for row in rows:  # the median of three interleaved rounds
        assert len(row["images_per_s_rounds"]) == 3
        assert row["images_per_s"] == sorted(row["images_per_s_rounds"])[1]
    assert "THROUGHPUT ONLY" in capsys.readouterr().out
