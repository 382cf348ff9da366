"""Turn reviewers' decisions into a labelled manifest that `photosieve ingest` takes as is.

Each upload a person decided (and did not undo) becomes one row: the stored photo's path, the
person's label, `source=primary`, the uploader and upload time, and `review_kind` — why a
person saw it. That column matters for re-certification: only photos drawn uniformly at random
from production (`audit` rows, a random share of auto-approved uploads) say anything unbiased
about what the model misses; `model_band`, `appeal` and `hash_match` rows were selected by the
model, so they are good *training* data but must not stand in for a random calibration sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from sqlalchemy.orm import Session

from photosieve.store import decisions
from photosieve.store.photos import PhotoStore

EXPORT_COLUMNS: tuple[str, ...] = (
    "path",
    "label",
    "source",
    "user_id",
    "uploaded_at",
    "review_kind",
    "decided_at",
    "model_version",
    "model_score",
    "model_decision",
    "upload_id",
)


@dataclass(frozen=True)
class ExportSummary:
    """What an export wrote."""

    rows: int
    offensive: int
    by_kind: dict[str, int]
    missing_files: int


def decided_labels(session: Session, store: PhotoStore, cache: Path) -> tuple[pd.DataFrame, int]:
    """One row per upload with a standing (not undone) human decision; the latest one wins.

    `path` is the store's own file (folder store) or a copy downloaded under `cache` (S3).
    Returns the rows and how many decided uploads were skipped because their photo is no
    longer in the image store.
    """
    latest: dict[str, dict[str, object]] = {}
    missing: set[str] = set()
    for decision, item, upload in decisions.standing_with_items(session):
        try:
            path = store.local_copy(upload.sha256, cache)
        except FileNotFoundError:
            missing.add(upload.id)
            continue
        latest[upload.id] = {
            "path": str(path),
            "label": decision.label,
            "source": "primary",
            "user_id": upload.user_id,
            "uploaded_at": upload.created_at.isoformat(),
            "review_kind": item.kind,
            "decided_at": decision.decided_at.isoformat(),
            "model_version": upload.model_version,
            "model_score": upload.score,
            "model_decision": upload.model_decision,
            "upload_id": upload.id,
        }
    frame = pd.DataFrame(list(latest.values()), columns=list(EXPORT_COLUMNS))
    return frame, len(missing - set(latest))


def export_labels(session: Session, store: PhotoStore, out: Path) -> ExportSummary:
    """Write the decided uploads as a manifest CSV (atomically) and summarise it.

    Photos of a remote store are downloaded once into `<out folder>/photos/`.
    """
    frame, missing = decided_labels(session, store, out.parent / "photos")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.tmp")
    frame.to_csv(staging, index=False)
    staging.replace(out)
    return ExportSummary(
        rows=len(frame),
        offensive=int((frame["label"] == "offensive").sum()),
        by_kind={str(k): int(v) for k, v in frame["review_kind"].value_counts().items()},
        missing_files=missing,
    )
