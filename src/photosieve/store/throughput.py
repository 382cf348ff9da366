"""How the review team and the upload stream actually behave, from the queue's history.

`review_throughput` measures decisions per active reviewer-hour (a reviewer is active between two
of their decisions less than `IDLE_GAP` apart), and the shares of uploads per band, of removals
appealed and of approvals audited: the measured inputs of the team forecast.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from photosieve.store.models import ItemKind, ReviewDecision, ReviewItem, Upload

# A longer pause between two decisions of one reviewer is a break, not review time.
IDLE_GAP = dt.timedelta(minutes=10)


@dataclass(frozen=True)
class ReviewThroughput:
    """Measured from the database (all history)."""

    uploads: int
    model_decisions: dict[str, int]  # approve / review / remove, as the model decided
    decisions: int  # reviewer decisions that stand (undone ones excluded)
    active_hours: float
    appeals: int
    audits: int

    @property
    def decisions_per_hour(self) -> float | None:
        return self.decisions / self.active_hours if self.active_hours > 0 else None

    def share(self, decision: str) -> float | None:
        return self.model_decisions.get(decision, 0) / self.uploads if self.uploads else None

    @property
    def appeal_rate(self) -> float | None:
        removed = self.model_decisions.get("remove", 0)
        return self.appeals / removed if removed else None

    @property
    def audit_rate(self) -> float | None:
        approved = self.model_decisions.get("approve", 0)
        return self.audits / approved if approved else None


def review_throughput(session: Session) -> ReviewThroughput:
    """The team's measured pace and the stream's measured shares."""
    rows = session.execute(
        select(Upload.model_decision, func.count()).group_by(Upload.model_decision)
    ).all()
    bands = {str(decision): int(n) for decision, n in rows}
    uploads = sum(int(n) for n in bands.values())
    times = session.execute(
        select(ReviewDecision.reviewer_id, ReviewDecision.decided_at)
        .where(ReviewDecision.undone.is_(False))
        .order_by(ReviewDecision.reviewer_id, ReviewDecision.decided_at)
    ).all()
    active = dt.timedelta()
    decisions = 0
    last: tuple[int, dt.datetime] | None = None
    for reviewer, at in times:
        decisions += 1
        if last is not None and last[0] == reviewer and at - last[1] < IDLE_GAP:
            active += at - last[1]
        last = (reviewer, at)
    appeals = session.scalar(select(func.count()).select_from(Upload).where(
        Upload.appealed_at.is_not(None)))  # fmt: skip
    audits = session.scalar(select(func.count()).select_from(ReviewItem).where(
        ReviewItem.kind == ItemKind.AUDIT.value))  # fmt: skip
    return ReviewThroughput(
        uploads=uploads,
        model_decisions={str(k): int(v) for k, v in bands.items()},
        decisions=decisions,
        active_hours=active.total_seconds() / 3600,
        appeals=int(appeals or 0),
        audits=int(audits or 0),
    )
