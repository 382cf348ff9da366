"""Typed records shared by the stages: labels, splits, image rows and decisions.

Stages exchange these (or files whose columns are named here), never each other's internals.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


class Label(enum.StrEnum):
    """What a person decided a photo is."""

    OFFENSIVE = "offensive"
    OK = "ok"


class Split(enum.StrEnum):
    """Where a labelled photo is used. Only primary-source photos reach the held-out splits."""

    TRAIN = "train"
    TRAIN_DEV = "train_dev"
    VALIDATION = "validation"
    CALIBRATION = "calibration"
    TEST = "test"


class Decision(enum.StrEnum):
    """What the operating policy does with a scored photo."""

    APPROVE = "approve"
    REVIEW = "review"
    REMOVE = "remove"


PRIMARY_SOURCE = "primary"

# Columns of the split manifest (CSV or Parquet) that later stages rely on; extra columns pass
# through untouched.
MANIFEST_COLUMNS: tuple[str, ...] = (
    "path",  # absolute path of the image file
    "label",  # Label value
    "source",  # "primary" or "external:<name>"
    "sha256",  # hex digest of the file bytes
    "phash",  # perceptual hash (hex) used for near-duplicate groups
    "group_id",  # duplicate group; a group never straddles two splits
    "split",  # Split value
)


def is_external(source: str) -> bool:
    """True for photos from another distribution (training only)."""
    return source != PRIMARY_SOURCE


def binary_labels(labels: Any) -> np.ndarray:
    """Labels as a 1-D bool array (True = offensive); accepts bools, 0/1 or 'offensive'/'ok'."""
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"labels must be one-dimensional, got shape {arr.shape}")
    if arr.dtype.kind == "b":
        return arr
    if arr.dtype.kind in "OUS":
        text = arr.astype(str)
        unknown = set(text.tolist()) - {Label.OFFENSIVE.value, Label.OK.value}
        if unknown:
            raise ValueError(f"unknown labels {sorted(unknown)[:5]}; expected 'offensive' or 'ok'")
        return np.asarray(text == Label.OFFENSIVE.value)
    if arr.size and not np.isin(arr, (0, 1)).all():
        raise ValueError(
            f"numeric labels must be 0 (ok) or 1 (offensive), got {np.unique(arr)[:5]}"
        )
    return arr.astype(bool)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes: the key of every cache and duplicate check."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of in-memory bytes (uploads)."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class ImageRecord:
    """One labelled photo as ingested: validated, hashed, not yet split."""

    path: Path
    label: Label
    source: str = PRIMARY_SOURCE
    sha256: str = ""
    phash: str = ""
    user_id: str | None = None
    uploaded_at: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_positive(self) -> bool:
        return self.label is Label.OFFENSIVE

    @property
    def is_external(self) -> bool:
        return is_external(self.source)
