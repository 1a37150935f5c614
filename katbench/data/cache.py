"""The one on-disk data cache of katbench: where cached files live and how they are trusted.

Every cached file ``f`` has a sidecar ``f.sha256`` holding its SHA-256, written after ``f``
itself (both atomically), so a file without a matching sidecar is an interrupted or corrupted
write. :func:`verify` says whether a cached file can be used; :func:`discard_if_corrupt` removes
a bad one (with a warning naming it) so the caller rebuilds it, and :func:`seal` records the
checksum of a freshly built file. The root is ``$KATBENCH_CACHE`` (default
``~/.cache/katbench``), so tests and clusters can point it elsewhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

from katbench.tracking import atomic_write_text

__all__ = ["cache_root", "discard_if_corrupt", "params_key", "seal",
           "sha256_file", "verify"]


def cache_root(*parts: str) -> Path:
    """``$KATBENCH_CACHE/<parts...>`` (default ``~/.cache/katbench``), created on demand."""
    root = Path(os.environ.get("KATBENCH_CACHE", Path.home() / ".cache" / "katbench"))
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def params_key(params: dict[str, Any], length: int = 12) -> str:
    """Short stable hash of a JSON-able parameter dict: cache names change when inputs do."""
    text = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def seal(path: Path) -> str:
    """Record ``path``'s checksum in its sidecar (call once the file is completely written)."""
    digest = sha256_file(path)
    atomic_write_text(_sidecar(path), digest + "\n")
    return digest


def verify(path: Path) -> bool:
    """True when ``path`` and its sidecar exist and the file's SHA-256 equals the recorded one."""
    sidecar = _sidecar(path)
    if not (path.is_file() and sidecar.is_file()):
        return False
    return sidecar.read_text().strip() == sha256_file(path)


def discard_if_corrupt(path: Path) -> bool:
    """Remove ``path`` (and its sidecar) unless :func:`verify` passes; True when it was removed.

    A missing file is not corrupt (nothing to remove). A present file with a missing or wrong
    checksum is deleted with a warning so the caller rebuilds it instead of silently using it.
    """
    path = Path(path)
    if not path.exists() or verify(path):
        return False
    warnings.warn(f"cached file {path} does not match its checksum "
                  f"({_sidecar(path).name}); rebuilding it", stacklevel=2)
    path.unlink(missing_ok=True)
    _sidecar(path).unlink(missing_ok=True)
    return True
