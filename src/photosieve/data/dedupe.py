"""Duplicate groups: exact copies (same SHA-256) and near copies (close perceptual hashes).

A near copy is a photo re-encoded, resized or lightly edited: its 256-bit pHash (DCT hash from
`imagehash`) lies within `NEAR_DUPLICATE_DISTANCE` bits of the original's. Pairs are joined into
connected groups (`group_id`), which the split planner keeps whole so no photo leaks from
training into a held-out split through its copy.

Pairs are found by a blockwise, vectorised XOR + popcount over all pairs of hashes (4 uint64
words each): n²/2 distances, a few seconds for 13k photos, minutes for 100k. Past a few
hundred thousand photos a BK-tree or multi-index hashing would be the next step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import imagehash
import numpy as np
import pandas as pd
from PIL import Image
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

# 256-bit pHash (16×16 DCT signs): the 64-bit default is too coarse for product shots on white,
# where distinct photos of one class fall within 4 bits of each other and chain into big groups.
HASH_SIZE = 16
HASH_BITS = HASH_SIZE * HASH_SIZE
# Hamming distance (of 256 bits) at or below which two pHashes count as the same photo. Measured
# on the benchmark (docs/manifest.md): halving + JPEG q60 moves a hash by 2 bits (median), 6
# (90th percentile); distinct Caltech motorbikes on white stay ≥ 56 apart (0.1th percentile).
# At 32: 134 groups, the largest 7 photos, no groups with conflicting labels.
NEAR_DUPLICATE_DISTANCE = 32
_BLOCK = 256
_WORDS = HASH_BITS // 64


def perceptual_hash(image: Image.Image) -> str:
    """256-bit pHash of a decoded photo as 64 hex digits."""
    return str(imagehash.phash(image, hash_size=HASH_SIZE))


def hashes_to_uint64(hashes: Sequence[str]) -> np.ndarray:
    """64-hex-digit hashes → (n, 4) uint64 array; raises ValueError naming a malformed one."""
    digits = HASH_BITS // 4
    out = np.empty((len(hashes), _WORDS), dtype=np.uint64)
    for i, text in enumerate(hashes):
        try:
            if not isinstance(text, str) or len(text) != digits:
                raise ValueError
            out[i] = [int(text[k : k + 16], 16) for k in range(0, digits, 16)]
        except ValueError as exc:
            raise ValueError(
                f"perceptual hash #{i} {text!r} is not {digits} hex digits (a {HASH_BITS}-bit "
                "pHash); re-run `photosieve ingest` to compute it"
            ) from exc
    return out


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bit distance between broadcastable (..., 4) uint64 hash arrays."""
    return np.bitwise_count(a ^ b).sum(axis=-1, dtype=np.int32)


def near_pairs(hashes: np.ndarray, max_distance: int) -> tuple[np.ndarray, np.ndarray]:
    """All index pairs (i < j) of (n, 4) uint64 hashes at most `max_distance` bits apart."""
    if max_distance < 0 or max_distance > HASH_BITS:
        raise ValueError(f"max_distance must be in 0..{HASH_BITS}, got {max_distance}")
    n = len(hashes)
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    for start in range(0, n, _BLOCK):
        block = hashes[start : start + _BLOCK]  # (B, 4)
        rest = hashes[start:]  # (n - start, 4)
        distance = hamming(block[:, None, :], rest[None, :, :])  # (B, n - start)
        i, j = np.nonzero(distance <= max_distance)
        keep = j > i  # upper triangle: each pair once, no self-pairs
        rows.append(i[keep] + start)
        cols.append(j[keep] + start)
    if not rows:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    return np.concatenate(rows).astype(np.int64), np.concatenate(cols).astype(np.int64)


@dataclass(frozen=True)
class DuplicateGroups:
    """Group of every photo (`group_id`, numbered in order of first appearance) and pair counts."""

    group_id: np.ndarray  # (n,) int64
    exact_pairs: int  # photos joined to an earlier one by identical bytes
    near_pairs: int  # pHash pairs within the distance (including exact copies)

    @property
    def n_groups(self) -> int:
        return int(self.group_id.max()) + 1 if len(self.group_id) else 0


def duplicate_groups(
    sha256: Sequence[str],
    phash: Sequence[str],
    *,
    max_distance: int = NEAR_DUPLICATE_DISTANCE,
) -> DuplicateGroups:
    """Connected groups of exact (same SHA-256) and near (pHash distance ≤ max) duplicates."""
    if len(sha256) != len(phash):
        raise ValueError(f"{len(sha256)} SHA-256 digests but {len(phash)} perceptual hashes")
    n = len(sha256)
    codes, _ = pd.factorize(pd.Series(list(sha256), dtype=str))
    # Exact copies: link each photo to the first photo with the same bytes.
    first = pd.Series(np.arange(n)).groupby(codes).transform("min").to_numpy()
    exact = first != np.arange(n)
    near_i, near_j = near_pairs(hashes_to_uint64(phash), max_distance)
    rows = np.concatenate([np.arange(n)[exact], near_i])
    cols = np.concatenate([first[exact], near_j])
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    # Renumber in order of first appearance so ids do not depend on scipy's internals.
    renumbered, _ = pd.factorize(pd.Series(labels))
    return DuplicateGroups(
        group_id=renumbered.astype(np.int64),
        exact_pairs=int(exact.sum()),
        near_pairs=len(near_i),
    )


def conflicting_groups(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows of every group whose members carry different labels (for a person to review)."""
    if frame.empty:
        return frame.copy()
    n_labels = frame.groupby("group_id")["label"].transform("nunique")
    conflicts = frame[n_labels > 1]
    return conflicts.sort_values(["group_id", "label"], kind="stable")
