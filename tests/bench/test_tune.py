"""Launch-tuning variants of `python -m katbench.bench tune` become validated nvcc defines."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from katbench.bench.tune import relative_error, variant_env, variant_flags


def test_variant_flags_become_defines():
    assert variant_flags("FORWARD_STAGES=2 min_blocks=3") == [
        "-DKATBENCH_FORWARD_STAGES=2", "-DKATBENCH_MIN_BLOCKS=3"]
    assert variant_flags("") == []


@pytest.mark.parametrize("bad", ["FORWARD_STAGES", "ROWS=two", "1X=2"])
def test_bad_variant_names_the_fix(bad):
    with pytest.raises(ValueError, match="NAME=integer"):
        variant_flags(bad)


def test_each_variant_builds_in_its_own_folder(tmp_path: Path):
    default, other = variant_env("", tmp_path), variant_env("FORWARD_STAGES=1", tmp_path)
    assert default["KATBENCH_CUDA_FLAGS"] == "" and default["KATBENCH_BACKEND"] == "compiled"
    assert other["KATBENCH_CUDA_FLAGS"] == "-DKATBENCH_FORWARD_STAGES=1"
    assert default["KATBENCH_BUILD_DIR"] != other["KATBENCH_BUILD_DIR"]


@pytest.mark.parametrize(("dtype", "bound"), [(torch.float32, 1e-5), (torch.bfloat16, 1e-2)])
def test_relative_error_of_the_kernels_against_float64_is_small(dtype, bound):
    error = relative_error(dtype, torch.device("cpu"), shape=(5, 7, 64))
    assert 0 < error < bound
