"""Read-only counts for the admin page and `/v1/admin/stats`: today's numbers and the queue."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session

from photosieve.store import bank, queue
from photosieve.store.models import ItemKind, ReviewDecision, ReviewItem, Upload, UploadStatus


def start_of_day(now: dt.datetime) -> dt.datetime:
    return now.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def summary(session: Session, now: dt.datetime) -> dict[str, Any]:
    """Queue depth by kind and today's (UTC) uploads, decisions, appeals and audit results."""
    since = start_of_day(now)
    depth = queue.depth(session)
    uploads_today = {s.value: 0 for s in UploadStatus}
    for status, n in session.execute(
        select(Upload.status, func.count())
        .where(Upload.created_at >= since)
        .group_by(Upload.status)
    ):
        uploads_today[status] = int(n)
    live = ReviewDecision.undone.is_(False)
    decisions_today = {"offensive": 0, "ok": 0}
    for label, n in session.execute(
        select(ReviewDecision.label, func.count())
        .where(ReviewDecision.decided_at >= since, live)
        .group_by(ReviewDecision.label)
    ):
        decisions_today[label] = int(n)
    audits = (
        select(ReviewDecision.label, func.count())
        .join(ReviewItem, ReviewItem.id == ReviewDecision.item_id)
        .where(ReviewItem.kind == ItemKind.AUDIT.value, live)
        .group_by(ReviewDecision.label)
    )
    audit_counts = {label: int(n) for label, n in session.execute(audits)}
    appeals = select(func.count()).select_from(Upload).where(Upload.appealed_at >= since)
    reviewers = select(func.count(distinct(ReviewDecision.reviewer_id))).where(
        ReviewDecision.decided_at >= since
    )
    return {
        "since": since,
        "queue_depth": depth,
        "queue_total": sum(depth.values()),
        "uploads_today": uploads_today,
        "decisions_today": decisions_today,
        "appeals_today": int(session.scalar(appeals) or 0),
        "audits_decided": sum(audit_counts.values()),
        "audits_offensive": audit_counts.get("offensive", 0),
        "known_bad_hashes": bank.count_active(session),
        "reviewers_active_today": int(session.scalar(reviewers) or 0),
    }
