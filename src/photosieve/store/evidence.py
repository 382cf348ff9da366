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

from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from photosieve.config import CERTIFY
from photosieve.policy.production import (
    CENSUS,
    ProductionEvidence,
    recall_bound_from_counts,
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


@dataclass(frozen=True)
class EvidenceCounts:
    """The evidence of one model version summarised at one threshold (see `evidence_counts`)."""

    photos: int  # rows of the evidence
    census_labelled: int  # rows with inclusion 1 (all labelled)
    audits_labelled: int  # audited rows with inclusion < 1
    caught: int  # labelled offensive at or above the threshold
    census_misses: int  # labelled offensive census rows below it
    strata: dict[float, tuple[int, int]]  # p_h → (offensive found, photos) below it

    @property
    def positives(self) -> int:
        return self.caught + self.census_misses + sum(k for k, _ in self.strata.values())


def evidence_counts(
    session: Session, model_version: str, threshold: float, *, legacy_audit_rate: float
) -> EvidenceCounts:
    """`production_evidence` counted at `threshold` in one GROUP BY: what the recall bound at a
    fixed threshold needs, without sending every upload's row to Python."""
    item = (
        select(ReviewItem.upload_id, func.max(ReviewItem.id).label("item_id"))
        .where(ReviewItem.kind.in_(EVIDENCE_KINDS))
        .group_by(ReviewItem.upload_id)
        .subquery()
    )
    latest = (  # the latest standing decision of each item
        select(ReviewDecision.item_id, func.max(ReviewDecision.id).label("decision_id"))
        .where(ReviewDecision.undone.is_(False))
        .group_by(ReviewDecision.item_id)
        .subquery()
    )
    rows = (
        select(
            Upload.model_decision.label("decision"),
            func.coalesce(Upload.audit_probability, legacy_audit_rate).label("p"),
            case((Upload.score < threshold, 1), else_=0).label("below"),
            case((item.c.item_id.is_(None), 0), else_=1).label("audited"),
            ReviewDecision.label.label("label"),
        )
        .select_from(Upload)
        .outerjoin(item, item.c.upload_id == Upload.id)
        .outerjoin(latest, latest.c.item_id == item.c.item_id)
        .outerjoin(ReviewDecision, ReviewDecision.id == latest.c.decision_id)
        .where(
            Upload.model_version == model_version,
            Upload.reason != UploadReason.HASH_MATCH.value,
            Upload.model_decision.in_(("review", "approve")),
        )
        .subquery()
    )
    groups = session.execute(
        select(
            rows.c.decision, rows.c.p, rows.c.below, rows.c.audited, rows.c.label, func.count()
        ).group_by(rows.c.decision, rows.c.p, rows.c.below, rows.c.audited, rows.c.label)
    ).all()
    photos = census = audits = caught = census_misses = 0
    strata: dict[float, list[int]] = {}
    for decision, p_raw, below, audited, label, n in groups:
        if decision == "review":
            if label is None:
                continue  # not reviewed yet
            p, known, bad = 1.0, True, label == "offensive"
        else:
            p, known = float(p_raw), bool(audited)
            bad = known and label != "ok"  # pending audit: worst case
        if not 0.0 <= p <= 1.0 or (p == CENSUS and not known):
            raise ValueError(f"an approved upload has audit probability {p}: not in [0, 1]")
        photos += n
        census += n if p == CENSUS else 0
        audits += n if known and p < CENSUS else 0
        positive = known and bad
        if positive and not below:
            caught += n
        elif p == CENSUS:
            census_misses += n if positive else 0
        elif below:
            stratum = strata.setdefault(p, [0, 0])
            stratum[0] += n if positive else 0
            stratum[1] += n
    return EvidenceCounts(
        photos=photos, census_labelled=census, audits_labelled=audits, caught=caught,
        census_misses=census_misses, strata={p: (k, n) for p, (k, n) in strata.items()},
    )  # fmt: skip


def production_recall(
    session: Session,
    model_version: str,
    threshold: float,
    *,
    legacy_audit_rate: float,
    confidence: float = CERTIFY.confidence,
) -> dict[str, Any] | None:
    """The live model's recall on production, certified: the exact bound for this look and the
    anytime-valid one for a page that is refreshed after every batch; None without evidence.

    Counted in SQL (`evidence_counts`): the admin page and `/v1/admin/stats` no longer read every
    upload of the model."""
    counts = evidence_counts(session, model_version, threshold, legacy_audit_rate=legacy_audit_rate)
    if counts.positives == 0:
        return None
    args = (counts.caught, counts.census_misses, counts.strata, threshold)
    fixed = recall_bound_from_counts(*args, confidence=confidence)
    anytime = recall_bound_from_counts(*args, confidence=confidence, anytime=True)
    return {
        "model_version": model_version,
        "threshold": threshold,
        "confidence": confidence,
        "photos": counts.photos,
        "census_labelled": counts.census_labelled,
        "audits_labelled": counts.audits_labelled,
        "caught": fixed.caught,
        "audited_misses": fixed.audited_misses,
        "misses_upper_bound": fixed.misses_upper_bound,
        "recall_lower_bound": fixed.recall_lower_bound,
        "anytime_recall_lower_bound": anytime.recall_lower_bound,
    }


def recent_scores(session: Session, model_version: str, limit: int) -> np.ndarray:
    """Scores of the latest `limit` uploads `model_version` scored, newest first (drift alarm)."""
    scores = session.scalars(
        select(Upload.score)
        .where(Upload.model_version == model_version)
        .order_by(Upload.created_at.desc(), Upload.id.desc())
        .limit(limit)
    ).all()
    return np.asarray(scores, dtype=float)
