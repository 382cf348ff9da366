"""Scoring photos with a trained bundle: photo → embedding → score → approve / review / remove.

The one place where serving (and batch scoring) turns a photo into a decision. The `Scorer`
checks that its `Embedder` is the backbone the bundle was trained on (same id, same
preprocessing) and decodes uploads with the same `load_image` path as `embed_files`, so a photo
scores the same online as it did in training and calibration. `score_rows` scores the rows of a
labelled manifest (calibration, evaluation); `calibration_rows` is the only selection
calibration may see: primary-source rows of the calibration split, never external data.
A cascade bundle (`bundle.Refiner`) is scored the same way everywhere: its second backbone
embeds only the photos at or above the gate, from the same decode as the first (its stages
decode for the same size, which `ModelBundle` checks).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from photosieve.bundle import ModelBundle, SecondEmbeddings
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


def _check_embedder(embedder: Embedder, backbone_id: str, preprocess: object) -> None:
    if embedder.config.id != backbone_id:
        raise ValueError(
            f"embedder backbone {embedder.config.id!r} does not match the bundle's "
            f"{backbone_id!r}: scores would be meaningless"
        )
    if embedder.config.preprocess != preprocess:
        raise ValueError(
            f"the bundle was trained with preprocessing {preprocess} but the "
            f"embedder uses {embedder.config.preprocess}"
        )


class Scorer:
    """Scores photos with `bundle`; builds an `Embedder` for the bundle's backbone if not given
    (and for a cascade's second backbone, on as many threads as the first)."""

    def __init__(
        self,
        bundle: ModelBundle,
        embedder: Embedder | None = None,
        refine_embedder: Embedder | None = None,
    ) -> None:
        if embedder is None:
            embedder = Embedder(backbone_for(bundle.backbone_id))
        _check_embedder(embedder, bundle.backbone_id, bundle.preprocess)
        refiner = bundle.refiner
        if refiner is not None:
            if refine_embedder is None:
                refine_embedder = Embedder(
                    backbone_for(refiner.backbone_id), embedder.workdir, threads=embedder.threads
                )
            _check_embedder(refine_embedder, refiner.backbone_id, refiner.preprocess)
        self.bundle = bundle
        self.embedder = embedder
        self.refine_embedder = refine_embedder if refiner is not None else None

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

    def score_embeddings(
        self, X: np.ndarray, second: SecondEmbeddings | None = None
    ) -> list[ScoredImage]:
        """Decisions for precomputed backbone embeddings (N, embed_dim) (a cascade: and its
        second backbone's embeddings of the rows asked for, `ModelBundle.score_embeddings`)."""
        return self._decide(self.bundle.score_embeddings(X, second))

    def score_images(self, images: Sequence[Image.Image]) -> list[ScoredImage]:
        """Decisions for decoded photos (decoded for `embedder.config.preprocess.decode_size`)."""
        if len(images) == 0:
            return []
        return self.score_embeddings(self.embedder.embed_images(images), self._second(images))

    def _second(self, images: Sequence[Image.Image]) -> SecondEmbeddings | None:
        refine = self.refine_embedder
        if refine is None:
            return None
        return lambda rows: refine.embed_images([images[int(i)] for i in rows])

    def score_bytes(self, data: bytes) -> ScoredImage:
        """Decision for one uploaded file; raises `ImageDecodeError` for a bad upload. Every
        sampled frame of an animation is scored; the highest score decides."""
        decoded = decode(data, draft_size=self.embedder.config.preprocess.decode_size,
                         max_frames=ANIMATION_FRAMES)  # fmt: skip
        return max(self.score_images(decoded.all_frames), key=lambda s: s.score)

    def score_paths(self, paths: Sequence[Path], *, progress: bool = False) -> list[ScoredImage]:
        """Decisions for photo files, through the embedding cache of the embedder's workdir."""
        X = embed_files(
            paths, workdir=self.embedder.workdir, embedder=self.embedder, progress=progress
        )
        refine = self.refine_embedder
        second = None
        if refine is not None:
            second = lambda rows: embed_files(  # noqa: E731
                [paths[int(i)] for i in rows], workdir=refine.workdir, embedder=refine,
                progress=progress,
            )  # fmt: skip
        return self.score_embeddings(X, second)


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
    """The bundle's scores (n,) for the photos in `rows["path"]` (embeddings cached); a cascade
    embeds the photos at or above its gate with its second backbone too."""
    model = bundle if isinstance(bundle, ModelBundle) else ModelBundle.load(bundle)
    paths = [Path(p) for p in rows["path"]]
    backbone = backbone_for(model.backbone_id)
    X = embed_files(paths, workdir=workdir, backbone=backbone, progress=progress)
    second = None
    if model.refiner is not None:
        refine = backbone_for(model.refiner.backbone_id)
        second = lambda idx: embed_files(  # noqa: E731
            [paths[int(i)] for i in idx], workdir=workdir, backbone=refine, progress=progress
        )
    return model.score_embeddings(X, second)
