"""The JIT build folder is keyed by everything that changes the compiled kernels."""

from __future__ import annotations

from katbench.ops import build


def test_cuda_flags_join_the_build_key(monkeypatch, tmp_path):
    monkeypatch.delenv("KATBENCH_BUILD_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KATBENCH_CUDA_FLAGS", raising=False)
    plain = build.build_directory(with_cuda=True)
    monkeypatch.setenv("KATBENCH_CUDA_FLAGS", "-DKATBENCH_FORWARD_STAGES=1")
    assert build.cuda_flags() == ["-DKATBENCH_FORWARD_STAGES=1"]
    tuned = build.build_directory(with_cuda=True)
    assert tuned != plain and tuned.parent == plain.parent
