"""The data cache: env-overridable root, checksum sidecars, corrupt files discarded."""

from __future__ import annotations

import hashlib

import pytest

from katbench.data.cache import cache_root, discard_if_corrupt, params_key, seal, verify


def test_root_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("KATBENCH_CACHE", str(tmp_path / "c"))
    assert cache_root("graph", "x") == tmp_path / "c" / "graph" / "x"
    assert (tmp_path / "c" / "graph" / "x").is_dir()


def test_seal_verify_and_discard(tmp_path):
    path = tmp_path / "data.pt"
    path.write_bytes(b"abc")
    assert not verify(path)                                 # no sidecar yet: not trusted
    assert seal(path) == hashlib.sha256(b"abc").hexdigest()
    assert verify(path) and not discard_if_corrupt(path) and path.exists()
    path.write_bytes(b"abd")                                # bit rot / truncated write
    with pytest.warns(UserWarning, match="does not match its checksum"):
        assert discard_if_corrupt(path)
    assert not path.exists() and not (tmp_path / "data.pt.sha256").exists()
    assert not discard_if_corrupt(tmp_path / "missing.pt")  # nothing there: nothing to do


def test_params_key_is_order_free_and_sensitive():
    assert params_key({"a": 1, "b": 2}) == params_key({"b": 2, "a": 1})
    assert params_key({"a": 1}) != params_key({"a": 2})
