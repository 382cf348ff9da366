"""Production evidence from the database: what the live model decided and what people found.

For one model version, every upload the model itself decided (not a hash-bank match) becomes a
row of `policy.production.ProductionEvidence`:

- review band → census (inclusion 1), labelled once a reviewer's decision stands; still-pending
  ones are left out (they are caught whatever they are, so leaving them out only lowers the
  bound);
- auto-approved → audit stratum with the upload's recorded `audit_probability` (rows from before
  it was recorded take `legacy_audit_rate`); labelled when its audit is decided, and an audit
  still pending counts as offensive (the worst case, so the bound stays valid);
- auto-removed → left out (caught if offensive; leaving them out only lowers the bound).

Appeals and user reports are never evidence: they are not random samples.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from photosieve.config import CERTIFY
from photosieve.policy.production import (
    ProductionEvidence,
    anytime_recall_bound,
    recall_bound,
)
from photosieve.store.models import ItemKind, ReviewDecision, ReviewItem, Upload, UploadReason

EVIDENCE_KINDS = (ItemKind.MODEL_BAND.value, ItemKind.AUDIT.value)


def production_evidence(
    session: Session, model_version: str, *, legacy_audit_rate: float
) -> ProductionEvidence:
    """The evidence rows of `model_version` (see the module docstring)."""
    return production_evidence_by_upload(
        session, model_version, legacy_audit_rate=legacy_audit_rate
    )[1]


def production_evidence_by_upload(
    session: Session, model_version: str, *, legacy_audit_rate: float
) -> tuple[list[str], ProductionEvidence]:
    """`production_evidence` with the upload id of each row (to re-score it with a shadow)."""
    rows = session.execute(
        select(Upload.id, Upload.score, Upload.model_decision, Upload.audit_probability).where(
            Upload.model_version == model_version, Upload.reason != UploadReason.HASH_MATCH.value
        )
    ).all()
    items = session.execute(
        select(ReviewItem.upload_id, ReviewItem.id).where(ReviewItem.kind.in_(EVIDENCE_KINDS))
    ).all()
    item_of = {upload_id: item_id for upload_id, item_id in items}
    labels: dict[int, str] = {}
    for item_id, decided in session.execute(
        select(ReviewDecision.item_id, ReviewDecision.label)
        .where(ReviewDecision.undone.is_(False))
        .order_by(ReviewDecision.decided_at)
    ):
        labels[item_id] = decided  # the latest standing decision wins
    ids: list[str] = []
    scores, inclusion, labelled, offensive = [], [], [], []
    for upload_id, score, decision, probability in rows:
        label: str | None = labels.get(item_of[upload_id]) if upload_id in item_of else None
        if decision == "review":
            if label is None:
                continue  # not reviewed yet
            p, known, bad = 1.0, True, label == "offensive"
        elif decision == "approve":
            p = probability if probability is not None else legacy_audit_rate
            audited = upload_id in item_of
            known, bad = audited, audited and label != "ok"  # pending audit: worst case
        else:
            continue  # auto-removed
        ids.append(upload_id)
        scores.append(float(score))
        inclusion.append(float(p))
        labelled.append(known)
        offensive.append(bad)
    return ids, ProductionEvidence(
        np.asarray(scores, dtype=float),
        np.asarray(inclusion, dtype=float),
        np.asarray(labelled, dtype=bool),
        np.asarray(offensive, dtype=bool),
    )


def production_recall(
    session: Session,
    model_version: str,
    threshold: float,
    *,
    legacy_audit_rate: float,
    confidence: float = CERTIFY.confidence,
) -> dict[str, Any] | None:
    """The live model's recall on production, certified: the exact bound for this look and the
    anytime-valid one for a page that is refreshed after every batch; None without evidence."""
    ev = production_evidence(session, model_version, legacy_audit_rate=legacy_audit_rate)
    if not np.any(ev.labelled & ev.offensive):
        return None
    fixed = recall_bound(ev, threshold, confidence=confidence)
    anytime = anytime_recall_bound(ev, threshold, confidence=confidence)
    return {
        "model_version": model_version,
        "threshold": threshold,
        "confidence": confidence,
        "photos": int(ev.scores.size),
        "census_labelled": int(np.count_nonzero(ev.inclusion == 1.0)),
        "audits_labelled": int(np.count_nonzero(ev.labelled & (ev.inclusion < 1.0))),
        "caught": fixed.caught,
        "audited_misses": fixed.audited_misses,
        "misses_upper_bound": fixed.misses_upper_bound,
        "recall_lower_bound": fixed.recall_lower_bound,
        "anytime_recall_lower_bound": anytime.recall_lower_bound,
    }
