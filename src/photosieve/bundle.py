"""The model bundle: everything needed to score a photo later, in one folder.

A bundle holds the trained head's weights, the backbone's id and preprocessing, the training
config, the fingerprint of the data it was trained on, its metrics and, once calibrated, the
certified decision policy. Layout::

    <bundle>/bundle.json   metadata (this module's `ModelBundle` fields, minus the heads)
    <bundle>/head.pt       the head's state (`photosieve.learn.persist.save_head`)
    <bundle>/refiner.pt    a cascade's second head (only with a `Refiner`)
    <bundle>/backbone.pt   a tuned backbone's weights (only with one: `vision.tuned`)

A bundle with a `Refiner` is a two-stage cascade: its head scores every photo; a photo scored
below the refiner's `gate` gets the composite score 0 (approved: the gate was fixed on the
validation split, before calibration), the rest are scored by the refiner's head on the
concatenation [first embedding, the refiner backbone's embedding]. The policy is certified on
that composite score (`cascade_scores`), so a positive the gate stops is a miss the certificate
counts; every caller scores through `score_embeddings`, which refuses a cascade without its
second embeddings rather than return a score the policy was not certified on.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from photosieve.learn.logits import gated_scores
from photosieve.learn.persist import load_head, save_head
from photosieve.policy.bands import DecisionPolicy
from photosieve.vision.preprocess import PreprocessConfig

BUNDLE_FORMAT = 1
# A cascade is written as format 2, so a photosieve that predates cascades refuses it instead of
# scoring with the first stage alone, which its certificate does not cover.
CASCADE_FORMAT = 2
META_FILE = "bundle.json"
HEAD_FILE = "head.pt"
REFINER_FILE = "refiner.pt"
BACKBONE_FILE = "backbone.pt"  # a tuned backbone's weights (`vision.tuned`), when it has one


class ScoringHead(Protocol):
    """What a bundle needs of a head: a score in [0, 1], higher = more likely offensive."""

    def score(self, X: np.ndarray) -> np.ndarray: ...


SecondEmbeddings = Callable[[np.ndarray], np.ndarray]  # row indices (k,) → (k, D2) embeddings


@dataclass(frozen=True)
class Refiner:
    """A cascade's second look: its head scores [first embedding, `backbone_id` embedding] of
    the photos the bundle's head scores at or above `gate`."""

    head: ScoringHead
    backbone_id: str
    preprocess: PreprocessConfig
    gate: float
    gate_rule: dict[str, Any] = field(default_factory=dict)  # how the gate was chosen

    def meta(self) -> dict[str, Any]:
        return {
            "backbone_id": self.backbone_id,
            "preprocess": self.preprocess.to_dict(),
            "gate": self.gate,
            "gate_rule": self.gate_rule,
        }


def check_one_decode(first: PreprocessConfig, second: PreprocessConfig, hint: str = "") -> None:
    """Refuse cascade stages that decode photos for different sizes: one decode serves both."""
    if first.decode_size != second.decode_size:
        raise ValueError(
            "a cascade's stages must decode photos for the same size (one decode serves "
            f"both): {first.decode_size} px vs {second.decode_size} px{hint}"
        )


def cascade_scores(
    first: np.ndarray, refiner: Refiner, X: np.ndarray, second: SecondEmbeddings
) -> np.ndarray:
    """Composite scores: 0 below the gate, else the refiner's score on [X, second(rows)]
    (`learn.logits.gated_scores`, which the batch workers use too)."""

    def refined(rows: np.ndarray) -> np.ndarray:
        X2 = np.asarray(second(rows), dtype=np.float32)
        if X2.shape[0] != len(rows):
            raise ValueError(f"{X2.shape[0]} second embeddings for {len(rows)} photos")
        both = np.concatenate([np.asarray(X[rows], dtype=np.float32), X2], axis=1)
        return np.asarray(refiner.head.score(both))

    return gated_scores(first, refiner.gate, refined)


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
    refiner: Refiner | None = None
    # A tuned backbone's weights file (`vision.tuned`; `backbone_id` is its id); saved into the
    # bundle folder, registered again when the bundle is loaded
    backbone_weights: Path | None = None

    def __post_init__(self) -> None:
        if self.refiner is not None:
            check_one_decode(self.preprocess, self.refiner.preprocess)

    def score_embeddings(self, X: np.ndarray, second: SecondEmbeddings | None = None) -> np.ndarray:
        """Scores (N,) for backbone embeddings (N, D): the ones the policy is certified on.

        A cascade also needs `second`, the refiner backbone's embeddings of the rows it is
        given (called once, only for the rows at or above the gate)."""
        first = self.first_scores(X)
        if self.refiner is None:
            return first
        if second is None:
            raise ValueError(
                "this bundle is a two-stage cascade: scoring needs the embeddings of its "
                f"second backbone ({self.refiner.backbone_id}) too"
            )
        return cascade_scores(first, self.refiner, X, second)

    def first_scores(self, X: np.ndarray) -> np.ndarray:
        """The head's scores (N,): a cascade's first stage, else the final scores."""
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
            heads = [staging / HEAD_FILE]
            if self.refiner is not None:
                heads.append(save_head(self.refiner.head, staging / REFINER_FILE))
            if self.backbone_weights is not None:
                heads.append(Path(shutil.copyfile(self.backbone_weights, staging / BACKBONE_FILE)))
            meta = self._meta()
            meta["version"] = self.version or _content_version(heads, meta)
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
        if meta.get("format") not in (BUNDLE_FORMAT, CASCADE_FORMAT):
            raise ValueError(
                f"bundle format {meta.get('format')!r} is not supported (expected "
                f"{BUNDLE_FORMAT} or {CASCADE_FORMAT}); retrain with this version of photosieve"
            )
        policy = meta.get("policy")
        refiner = meta.get("refiner")
        weights = folder / BACKBONE_FILE
        if weights.is_file():
            _register_backbone(weights, meta["backbone_id"])
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
            refiner=_load_refiner(folder, refiner) if refiner else None,
            backbone_weights=weights if weights.is_file() else None,
        )

    def _meta(self) -> dict[str, Any]:
        return {
            "format": BUNDLE_FORMAT if self.refiner is None else CASCADE_FORMAT,
            "backbone_id": self.backbone_id,
            "preprocess": self.preprocess.to_dict(),
            "train_config": self.train_config,
            "data_fingerprint": self.data_fingerprint,
            "metrics": self.metrics,
            "policy": self.policy.to_dict() if self.policy else None,
            "created_at": self.created_at,
        } | ({"refiner": self.refiner.meta()} if self.refiner is not None else {})


def _register_backbone(weights: Path, backbone_id: str) -> None:
    """Register the bundle's tuned backbone in this process; refuse weights that are not the
    ones its head was trained on."""
    from photosieve.vision.backbone import backbone_config
    from photosieve.vision.tuned import register_tuned

    found = backbone_config(register_tuned(weights)).id
    if found != backbone_id:
        raise ValueError(
            f"{weights} holds backbone {found!r}, but the bundle was trained on {backbone_id!r}"
        )


def _load_refiner(folder: Path, meta: dict[str, Any]) -> Refiner:
    return Refiner(
        head=load_head(folder / REFINER_FILE),
        backbone_id=meta["backbone_id"],
        preprocess=PreprocessConfig.from_dict(meta["preprocess"]),
        gate=float(meta["gate"]),
        gate_rule=meta.get("gate_rule", {}),
    )


def _content_version(head_files: list[Path], meta: dict[str, Any]) -> str:
    digest = hashlib.sha256()
    for path in head_files:
        digest.update(path.read_bytes())
    digest.update(json.dumps(meta, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:12]
