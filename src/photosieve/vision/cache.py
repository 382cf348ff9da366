"""The on-disk embedding cache: embeddings keyed by (SHA-256 of the file bytes, backbone id).

Layout, one folder per backbone id::

    <workdir>/embeddings/<backbone id>/shard-<stamp>-<n>.npy       float32 (n, dim) embeddings
    <workdir>/embeddings/<backbone id>/shard-<stamp>-<n>.keys.npy  |S64 hex SHA-256, row-aligned

A shard is written vectors first, keys last, each to a temporary name then `os.replace`d, so a
shard exists (has a keys file) only once it is complete: an interrupted run loses at most the
shard it was filling, never corrupts the cache. Vectors are memory-mapped on lookup; the keys of
all shards (tens of thousands of 64-byte strings) load in milliseconds. Two runs writing at once
may both store a key; the duplicate is harmless.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from photosieve.config import Workdir

KEYS_SUFFIX = ".keys.npy"


class EmbeddingCache:
    """Read and append embeddings for one backbone id under `<workdir>/embeddings/<id>/`."""

    def __init__(self, workdir: Path, backbone_id: str, dim: int) -> None:
        if not backbone_id or "/" in backbone_id:
            raise ValueError(f"invalid backbone id {backbone_id!r}")
        self.folder = Workdir(Path(workdir)).embeddings / backbone_id
        self.dim = dim
        self._index: dict[bytes, tuple[int, int]] = {}
        self._shards: list[np.ndarray] = []
        self._loaded: set[str] = set()

    def refresh(self) -> None:
        """Pick up shards written since the last look (by this or another process)."""
        if not self.folder.is_dir():
            return
        for keys_file in sorted(self.folder.glob(f"shard-*{KEYS_SUFFIX}")):
            stem = keys_file.name[: -len(KEYS_SUFFIX)]
            if stem in self._loaded:
                continue
            vectors_file = self.folder / f"{stem}.npy"
            try:
                keys = np.load(keys_file)
                vectors = np.load(vectors_file, mmap_mode="r")
            except (OSError, ValueError):
                continue  # removed or half-written by someone else: skip it
            if vectors.shape != (len(keys), self.dim):
                continue
            shard_no = len(self._shards)
            self._shards.append(vectors)
            self._loaded.add(stem)
            for row, key in enumerate(keys.tolist()):
                self._index.setdefault(key, (shard_no, row))

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: str) -> bool:
        return key.encode() in self._index

    def lookup(self, keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(found mask, (N, dim) float32 array with the cached rows filled in)."""
        self.refresh()
        out = np.zeros((len(keys), self.dim), dtype=np.float32)
        found = np.zeros(len(keys), dtype=bool)
        for i, key in enumerate(keys):
            hit = self._index.get(key.encode())
            if hit is not None:
                out[i] = self._shards[hit[0]][hit[1]]
                found[i] = True
        return found, out

    def append(self, keys: Sequence[str], vectors: np.ndarray) -> Path | None:
        """Store one shard atomically; returns its vectors file (None when there is nothing)."""
        if len(keys) == 0:
            return None
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape != (len(keys), self.dim):
            expected = (len(keys), self.dim)
            raise ValueError(f"expected vectors of shape {expected}, got {vectors.shape}")
        self.folder.mkdir(parents=True, exist_ok=True)
        stem = f"shard-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}-{len(keys)}"
        vectors_file = self.folder / f"{stem}.npy"
        _atomic_save(vectors_file, vectors)
        _atomic_save(self.folder / f"{stem}{KEYS_SUFFIX}", np.asarray(keys, dtype="S64"))
        return vectors_file


def _atomic_save(target: Path, array: np.ndarray) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", suffix=".npy", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            np.save(handle, array)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
