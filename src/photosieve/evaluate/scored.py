"""Scores of a bundle on the rows of a split manifest, and the row selections evaluation uses.

Calibration must see only a uniform sample of production photos: `calibration_rows` keeps the
`split == "calibration"` rows of the primary source (never external data); evaluation defaults
to the `test` split of the primary source.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from photosieve.bundle import ModelBundle
from photosieve.records import PRIMARY_SOURCE, Split

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
    from photosieve.scoring import backbone_for
    from photosieve.vision.embed import embed_files

    model = bundle if isinstance(bundle, ModelBundle) else ModelBundle.load(bundle)
    paths = [Path(p) for p in rows["path"]]
    backbone = backbone_for(model.backbone_id)
    X = embed_files(paths, workdir=workdir, backbone=backbone, progress=progress)
    return model.score_embeddings(X)
