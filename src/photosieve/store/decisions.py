"""Repository of reviewers' decisions: record one, undo it, who removed a photo, standing ones.

A decision remembers the upload's status and reason before it, so an undo can put them back.
Functions here flush or execute but never commit: the caller owns the transaction
(`service.moderation`, `service.appeals`, `feedback.export`).
"""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from photosieve.store.models import KnownBadHash, ReviewDecision, ReviewItem, Upload, utcnow


def record(
    session: Session, *, item_id: int, upload: Upload, label: str, reviewer_id: int
) -> ReviewDecision:
    """Add a reviewer's decision on an upload, before its status changes (flushed, not
    committed): the upload's current status and reason are kept for an undo."""
    decision = ReviewDecision(
        item_id=item_id,
        upload_id=upload.id,
        label=label,
        reviewer_id=reviewer_id,
        decided_at=utcnow(),
        undone=False,
        previous_status=upload.status,
        previous_reason=upload.reason,
    )
    session.add(decision)
    session.flush()
    return decision


def get(session: Session, decision_id: int) -> ReviewDecision | None:
    """The decision with this id, or None."""
    return session.get(ReviewDecision, decision_id)


def mark_undone(session: Session, decision_id: int) -> bool:
    """Flag a standing decision undone (now); False when it was undone already or is missing.

    The conditional `UPDATE` is the guard that lets only one of two racing undos through.
    """
    flipped = session.execute(
        update(ReviewDecision)
        .where(ReviewDecision.id == decision_id, ReviewDecision.undone.is_(False))
        .values(undone=True, undone_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return bool(flipped.rowcount == 1)  # type: ignore[attr-defined]


def count_standing_others(session: Session, upload_id: str, decision_id: int) -> int:
    """How many decisions on the upload, other than `decision_id`, are not undone."""
    count = session.scalar(
        select(func.count())
        .select_from(ReviewDecision)
        .where(
            ReviewDecision.upload_id == upload_id,
            ReviewDecision.id != decision_id,
            ReviewDecision.undone.is_(False),
        )
    )
    return int(count or 0)


def latest_remover(session: Session, upload_id: str) -> int | None:
    """The reviewer of the upload's latest standing `offensive` decision, or None."""
    return session.scalar(
        select(ReviewDecision.reviewer_id)
        .where(
            ReviewDecision.upload_id == upload_id,
            ReviewDecision.label == "offensive",
            ReviewDecision.undone.is_(False),
        )
        .order_by(ReviewDecision.id.desc())
        .limit(1)
    )


def latest_banker(session: Session, source_upload_id: str) -> int | None:
    """The reviewer whose latest standing decision put a hash of `source_upload_id` in the
    known-bad bank (a person confirmed it), or None when only the model banked it."""
    return session.scalar(
        select(ReviewDecision.reviewer_id)
        .join(KnownBadHash, KnownBadHash.decision_id == ReviewDecision.id)
        .where(
            KnownBadHash.source_upload_id == source_upload_id,
            ReviewDecision.undone.is_(False),
        )
        .order_by(ReviewDecision.id.desc())
        .limit(1)
    )


def standing_with_items(session: Session) -> list[tuple[ReviewDecision, ReviewItem, Upload]]:
    """Every decision not undone, with its review item and upload, oldest decision first."""
    rows = session.execute(
        select(ReviewDecision, ReviewItem, Upload)
        .join(ReviewItem, ReviewItem.id == ReviewDecision.item_id)
        .join(Upload, Upload.id == ReviewDecision.upload_id)
        .where(ReviewDecision.undone.is_(False))
        .order_by(ReviewDecision.decided_at, ReviewDecision.id)
    )
    return [(decision, item, upload) for decision, item, upload in rows]
