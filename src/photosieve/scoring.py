"""Scoring photos with a trained bundle: photo → embedding → score → approve / review / remove.

The one place where serving (and batch scoring) turns a photo into a decision. The `Scorer`
checks that its `Embedder` is the backbone the bundle was trained on (same id, same
preprocessing) and decodes uploads with the same `load_image` path as `embed_files`, so a photo
scores the same online as it did in training and calibration. `score_rows` scores the rows of a
labelled manifest (calibration, evaluation); `calibration_rows` is the only selection
calibration may see: primary-source rows of the calibration split, never external data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from photosieve.bundle import ModelBundle
from photosieve.policy.bands import decide_or_review
from photosieve.records import PRIMARY_SOURCE, Decision, Split
from photosieve.vision.backbone import backbone_config, list_backbones
from photosieve.vision.decode import ANIMATION_FRAMES, decode
from photosieve.vision.embed import Embedder, embed_files


@dataclass(frozen=True)
class ScoredImage:
    """One photo's score (higher = more likely offensive), its decision and the model used."""

    score: float
    decision: Decision
    model_version: str


def backbone_for(backbone_id: str) -> str:
    """The registered backbone name whose id is `backbone_id` (weights hash included)."""
    known: list[str] = []
    for name in list_backbones():
        try:  # a registered backbone whose weights package is not installed cannot match
            config_id = backbone_config(name).id
        except ValueError:
            continue
        if config_id == backbone_id:
            return name
        known.append(config_id)
    raise ValueError(
        f"the bundle was trained on backbone {backbone_id!r}, which is not installed here "
        f"(available: {', '.join(known)}); retrain the bundle or install the matching weights"
    )


class Scorer:
    """Scores photos with `bundle`; builds an `Embedder` for the bundle's backbone if not given."""

    def __init__(self, bundle: ModelBundle, embedder: Embedder | None = None) -> None:
        if embedder is None:
            embedder = Embedder(backbone_for(bundle.backbone_id))
        if embedder.config.id != bundle.backbone_id:
            raise ValueError(
                f"embedder backbone {embedder.config.id!r} does not match the bundle's "
                f"{bundle.backbone_id!r}: scores would be meaningless"
            )
        if embedder.config.preprocess != bundle.preprocess:
            raise ValueError(
                f"the bundle was trained with preprocessing {bundle.preprocess} but the "
                f"embedder uses {embedder.config.preprocess}"
            )
        self.bundle = bundle
        self.embedder = embedder

    @property
    def model_version(self) -> str:
        return self.bundle.version

    def _decide(self, scores: np.ndarray) -> list[ScoredImage]:
        policy = self.bundle.policy
        version = self.bundle.version
        return [
            ScoredImage(
                score=float(s),
                decision=decide_or_review(policy, float(s)),
                model_version=version,
            )
            for s in scores
        ]

    def score_embeddings(self, X: np.ndarray) -> list[ScoredImage]:
        """Decisions for precomputed backbone embeddings (N, embed_dim)."""
        return self._decide(self.bundle.score_embeddings(X))

    def score_images(self, images: Sequence[Image.Image]) -> list[ScoredImage]:
        """Decisions for decoded photos (use `load_image` to decode)."""
        if len(images) == 0:
            return []
        return self.score_embeddings(self.embedder.embed_images(images))

    def score_bytes(self, data: bytes) -> ScoredImage:
        """Decision for one uploaded file; raises `ImageDecodeError` for a bad upload. Every
        sampled frame of an animation is scored; the highest score decides."""
        decoded = decode(data, draft_size=self.embedder.config.preprocess.input_size,
                         max_frames=ANIMATION_FRAMES)  # fmt: skip
        return max(self.score_images(decoded.all_frames), key=lambda s: s.score)

    def score_paths(self, paths: Sequence[Path], *, progress: bool = False) -> list[ScoredImage]:
        """Decisions for photo files, through the embedding cache of the embedder's workdir."""
        X = embed_files(
            paths, workdir=self.embedder.workdir, embedder=self.embedder, progress=progress
        )
        return self.score_embeddings(X)


CALIBRATION_SOURCE = f"split == '{Split.CALIBRATION.value}' and source == '{PRIMARY_SOURCE}'"


def select_rows(frame: pd.DataFrame, split: str | None, *, primary_only: bool) -> pd.DataFrame:
    """Rows of `split` (None = all), optionally only the primary source; refuses an empty result."""
    rows = frame
    if split is not None:
        if "split" not in rows.columns:
            raise ValueError(f"the manifest has no 'split' column to select split {split!r}")
        rows = rows[rows["split"] == split]
    if primary_only and "source" in rows.columns:
        rows = rows[rows["source"] == PRIMARY_SOURCE]
    if rows.empty:
        where = f"split {split!r}" if split else "the manifest"
        raise ValueError(
            f"no {'primary-source ' if primary_only else ''}rows in {where}; "
            "run `photosieve split` or pass another manifest/split"
        )
    return rows.reset_index(drop=True)


def calibration_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The calibration sample: primary-source rows of the calibration split only."""
    return select_rows(frame, Split.CALIBRATION.value, primary_only=True)


def score_rows(
    bundle: ModelBundle | str | Path,
    rows: pd.DataFrame,
    *,
    workdir: Path | None = None,
    progress: bool = True,
) -> np.ndarray:
    """The bundle's scores (n,) for the photos in `rows["path"]` (embeddings cached)."""
    model = bundle if isinstance(bundle, ModelBundle) else ModelBundle.load(bundle)
    paths = [Path(p) for p in rows["path"]]
    backbone = backbone_for(model.backbone_id)
    X = embed_files(paths, workdir=workdir, backbone=backbone, progress=progress)
    return model.score_embeddings(X)
