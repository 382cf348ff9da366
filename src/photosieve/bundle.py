"""The model bundle: everything needed to score a photo later, in one folder.

A bundle holds the trained head's weights, the backbone's id and preprocessing, the training
config, the fingerprint of the data it was trained on, its metrics and, once calibrated, the
certified decision policy. Layout::

    <bundle>/bundle.json   metadata (this module's `ModelBundle` fields, minus the head)
    <bundle>/head.pt       the head's state (`photosieve.learn.persist.save_head`)
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from photosieve.learn.persist import load_head, save_head
from photosieve.policy.bands import DecisionPolicy
from photosieve.vision.preprocess import PreprocessConfig

BUNDLE_FORMAT = 1
META_FILE = "bundle.json"
HEAD_FILE = "head.pt"


class ScoringHead(Protocol):
    """What a bundle needs of a head: a score in [0, 1], higher = more likely offensive."""

    def score(self, X: np.ndarray) -> np.ndarray: ...


@dataclass
class ModelBundle:
    """A trained model with its provenance and (after `calibrate`) its decision policy."""

    head: ScoringHead
    backbone_id: str
    preprocess: PreprocessConfig
    train_config: dict[str, Any] = field(default_factory=dict)
    data_fingerprint: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    policy: DecisionPolicy | None = None
    created_at: str = field(
        default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    )
    version: str = ""

    def score_embeddings(self, X: np.ndarray) -> np.ndarray:
        """Scores for backbone embeddings of shape (N, D)."""
        return np.asarray(self.head.score(np.asarray(X, dtype=np.float32)), dtype=np.float64)

    def with_policy(self, policy: DecisionPolicy) -> ModelBundle:
        """A copy carrying a (new) decision policy."""
        return dataclasses.replace(self, policy=policy, version="")

    def with_metrics(self, **metrics: Any) -> ModelBundle:
        """A copy with metrics added or replaced."""
        return dataclasses.replace(self, metrics={**self.metrics, **metrics}, version="")

    def save(self, path: str | Path) -> Path:
        """Write the bundle folder atomically (a crash leaves the old bundle or none)."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".bundle-", dir=target.parent))
        try:
            save_head(self.head, staging / HEAD_FILE)
            meta = self._meta()
            meta["version"] = self.version or _content_version(staging / HEAD_FILE, meta)
            (staging / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
            if target.exists():
                shutil.rmtree(target)
            staging.rename(target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        self.version = meta["version"]
        return target

    @classmethod
    def load(cls, path: str | Path) -> ModelBundle:
        """Read a bundle folder written by `save`."""
        folder = Path(path)
        meta_path = folder / META_FILE
        if not meta_path.is_file():
            raise ValueError(
                f"{folder} is not a model bundle (no {META_FILE}); "
                "create one with `photosieve train`"
            )
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != BUNDLE_FORMAT:
            raise ValueError(
                f"bundle format {meta.get('format')!r} is not supported (expected "
                f"{BUNDLE_FORMAT}); retrain with this version of photosieve"
            )
        policy = meta.get("policy")
        return cls(
            head=load_head(folder / HEAD_FILE),
            backbone_id=meta["backbone_id"],
            preprocess=PreprocessConfig.from_dict(meta["preprocess"]),
            train_config=meta.get("train_config", {}),
            data_fingerprint=meta.get("data_fingerprint", ""),
            metrics=meta.get("metrics", {}),
            policy=DecisionPolicy.from_dict(policy) if policy else None,
            created_at=meta.get("created_at", ""),
            version=meta.get("version", ""),
        )

    def _meta(self) -> dict[str, Any]:
        return {
            "format": BUNDLE_FORMAT,
            "backbone_id": self.backbone_id,
            "preprocess": self.preprocess.to_dict(),
            "train_config": self.train_config,
            "data_fingerprint": self.data_fingerprint,
            "metrics": self.metrics,
            "policy": self.policy.to_dict() if self.policy else None,
            "created_at": self.created_at,
        }


def _content_version(head_file: Path, meta: dict[str, Any]) -> str:
    digest = hashlib.sha256(head_file.read_bytes())
    digest.update(json.dumps(meta, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:12]
