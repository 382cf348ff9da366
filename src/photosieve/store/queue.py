"""Repository of the review queue: enqueue, claim a batch, release, mark decided, reopen, history.

Claims are atomic and never hand one item to two reviewers: on PostgreSQL the candidate rows are
locked with `SELECT … FOR UPDATE SKIP LOCKED`; on SQLite the transaction holds the database's
write lock from `BEGIN IMMEDIATE` (see `db.make_engine`). Either way the final `UPDATE` re-checks
that each row is still claimable, and a decision is recorded only by the `UPDATE` that moves its
item from claimed-by-me to decided, so each item is decided exactly once.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Select, and_, delete, func, or_, select, update
from sqlalchemy.orm import Session

from photosieve.store.db import begin_write
from photosieve.store.models import (
    ItemKind,
    ItemStatus,
    ReviewDecision,
    ReviewItem,
    Upload,
    User,
    utcnow,
)


class QueueError(ValueError):
    """A queue operation that cannot be done; `reason` is a short machine-readable code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class NotFoundError(QueueError):
    pass


class ConflictError(QueueError):
    pass


class ForbiddenError(QueueError):
    """This person may not do this (e.g. decide the appeal of their own removal)."""


@dataclass(frozen=True)
class QueuedItem:
    item: ReviewItem
    upload: Upload


def enqueue(session: Session, upload_id: str, kind: ItemKind) -> ReviewItem:
    """Queue an upload for a person (flushed, not committed)."""
    item = ReviewItem(
        upload_id=upload_id, kind=kind.value, status=ItemStatus.PENDING.value, created_at=utcnow()
    )
    session.add(item)
    session.flush()
    return item


def open_item_for(session: Session, upload_id: str) -> ReviewItem | None:
    """The upload's pending or claimed item, if any."""
    return session.scalar(
        select(ReviewItem)
        .where(ReviewItem.upload_id == upload_id, ReviewItem.status != ItemStatus.DECIDED.value)
        .order_by(ReviewItem.id)
        .limit(1)
    )


def get_item(session: Session, item_id: int) -> ReviewItem | None:
    """The review item with this id, or None."""
    return session.get(ReviewItem, item_id)


def upload_id_of(session: Session, item_id: int) -> str | None:
    """The id of the upload a review item is about, or None for an unknown item (no lock)."""
    return session.scalar(select(ReviewItem.upload_id).where(ReviewItem.id == item_id))


def first_kind_for(session: Session, upload_id: str) -> str | None:
    """The kind of the upload's oldest review item (decided or not), or None."""
    return session.scalar(
        select(ReviewItem.kind)
        .where(ReviewItem.upload_id == upload_id)
        .order_by(ReviewItem.id)
        .limit(1)
    )


def drop_open_appeals(session: Session, upload_id: str, *, keep_item_id: int) -> None:
    """Delete the upload's undecided appeal items other than `keep_item_id`; no commit."""
    session.execute(
        delete(ReviewItem).where(
            ReviewItem.upload_id == upload_id,
            ReviewItem.kind == ItemKind.APPEAL.value,
            ReviewItem.status != ItemStatus.DECIDED.value,
            ReviewItem.id != keep_item_id,
        )
    )


def _claimable(now: dt.datetime, reviewer_id: int) -> object:
    return and_(
        or_(
            ReviewItem.status == ItemStatus.PENDING.value,
            and_(ReviewItem.status == ItemStatus.CLAIMED.value, ReviewItem.claim_expires_at < now),
        ),
        # An appeal never goes to the reviewer whose decision removed the photo.
        or_(
            ReviewItem.recused_reviewer_id.is_(None),
            ReviewItem.recused_reviewer_id != reviewer_id,
        ),
    )


def candidates_query(now: dt.datetime, reviewer_id: int, wanted: int) -> Select[int]:
    """The ids of the `wanted` oldest claimable items, locked (`FOR UPDATE SKIP LOCKED`).

    Its ORDER BY is the column list of the partial index `ix_review_items_open`, whose
    predicate its WHERE implies, so PostgreSQL reads the first rows of that index instead of
    sorting every pending item (`bench/queue_scale.py`).
    """
    return (
        select(ReviewItem.id)
        .where(_claimable(now, reviewer_id))  # type: ignore[arg-type]
        .order_by(ReviewItem.created_at, ReviewItem.id)
        .limit(wanted)
        .with_for_update(skip_locked=True)
    )


def claim(session: Session, reviewer_id: int, limit: int, ttl: dt.timedelta) -> list[QueuedItem]:
    """Claim up to `limit` items for a reviewer, oldest first, and commit.

    The reviewer's own unexpired claims come first (their expiry is renewed), so reloading the
    queue page shows the same photos instead of grabbing more.
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    begin_write(session)
    now = utcnow()
    expires = now + ttl
    mine = update(ReviewItem).where(
        ReviewItem.status == ItemStatus.CLAIMED.value,
        ReviewItem.claimed_by == reviewer_id,
        ReviewItem.claim_expires_at >= now,
    )
    session.execute(mine.values(claim_expires_at=expires))
    held = (
        select(func.count())
        .select_from(ReviewItem)
        .where(
            ReviewItem.status == ItemStatus.CLAIMED.value,
            ReviewItem.claimed_by == reviewer_id,
            ReviewItem.claim_expires_at >= now,
        )
    )
    wanted = limit - int(session.scalar(held) or 0)
    if wanted > 0:
        candidates = list(session.scalars(candidates_query(now, reviewer_id, wanted)))
        if candidates:
            session.execute(
                update(ReviewItem)
                .where(ReviewItem.id.in_(candidates), _claimable(now, reviewer_id))  # type: ignore[arg-type]
                .values(
                    status=ItemStatus.CLAIMED.value,
                    claimed_by=reviewer_id,
                    claim_expires_at=expires,
                )
                .execution_options(synchronize_session=False)
            )
    rows = session.execute(
        select(ReviewItem, Upload)
        .join(Upload, Upload.id == ReviewItem.upload_id)
        .where(
            ReviewItem.status == ItemStatus.CLAIMED.value,
            ReviewItem.claimed_by == reviewer_id,
            ReviewItem.claim_expires_at >= now,
        )
        .order_by(ReviewItem.created_at, ReviewItem.id)
        .execution_options(populate_existing=True)
    ).all()
    session.commit()
    return [QueuedItem(item, upload) for item, upload in rows]


def release_claims(session: Session, reviewer_id: int) -> int:
    """Put every item the reviewer holds back in the queue (at sign-out); no commit.

    Returns how many items went back. Call inside a write transaction (`db.begin_write`).
    """
    result = session.execute(
        update(ReviewItem)
        .where(
            ReviewItem.status == ItemStatus.CLAIMED.value,
            ReviewItem.claimed_by == reviewer_id,
        )
        .values(status=ItemStatus.PENDING.value, claimed_by=None, claim_expires_at=None)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def mark_decided(session: Session, item_id: int, reviewer_id: int) -> ReviewItem:
    """Move an item the reviewer holds to decided (the exactly-once guard); no commit.

    Call inside a write transaction (`db.begin_write`).
    """
    now = utcnow()
    result = session.execute(
        update(ReviewItem)
        .where(
            ReviewItem.id == item_id,
            ReviewItem.status == ItemStatus.CLAIMED.value,
            ReviewItem.claimed_by == reviewer_id,
        )
        .values(status=ItemStatus.DECIDED.value, decided_at=now, claim_expires_at=None)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        item = session.get(ReviewItem, item_id)
        if item is None:
            raise NotFoundError("not_found", f"no review item {item_id}")
        raise ConflictError(
            "not_claimed",
            f"review item {item_id} is {item.status}"
            + ("" if item.status == ItemStatus.DECIDED.value else " and not held by you")
            + "; claim it first",
        )
    item = session.get(ReviewItem, item_id, populate_existing=True)
    assert item is not None
    return item


def reopen(session: Session, item: ReviewItem, reviewer_id: int, ttl: dt.timedelta) -> None:
    """Give a decided item back to the reviewer who undid its decision (claimed again)."""
    item.status = ItemStatus.CLAIMED.value
    item.claimed_by = reviewer_id
    item.claim_expires_at = utcnow() + ttl
    item.decided_at = None
    session.flush()


@dataclass(frozen=True)
class HistoryRow:
    decision: ReviewDecision
    item: ReviewItem
    upload: Upload
    reviewer: str


def history(
    session: Session, *, reviewer_id: int | None, limit: int = 50, before_id: int | None = None
) -> list[HistoryRow]:
    """Recent decisions, newest first (one reviewer's, or everyone's when `reviewer_id` is None)."""
    query = (
        select(ReviewDecision, ReviewItem, Upload, User.username)
        .join(ReviewItem, ReviewItem.id == ReviewDecision.item_id)
        .join(Upload, Upload.id == ReviewDecision.upload_id)
        .join(User, User.id == ReviewDecision.reviewer_id)
        .order_by(ReviewDecision.id.desc())
        .limit(limit)
    )
    if reviewer_id is not None:
        query = query.where(ReviewDecision.reviewer_id == reviewer_id)
    if before_id is not None:
        query = query.where(ReviewDecision.id < before_id)
    return [HistoryRow(d, i, u, name) for d, i, u, name in session.execute(query).all()]


def depth(session: Session) -> dict[str, int]:
    """Open (pending or claimed) items by kind; every kind is present."""
    rows = session.execute(
        select(ReviewItem.kind, func.count())
        .where(ReviewItem.status != ItemStatus.DECIDED.value)
        .group_by(ReviewItem.kind)
    ).all()
    counts = {kind.value: 0 for kind in ItemKind}
    counts.update({kind: int(n) for kind, n in rows})
    return counts
