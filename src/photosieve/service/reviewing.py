"""A reviewer's decision on a queued upload, and its undo: the upload's final status, the
known-bad bank, the client's webhook event, the queue item — in one transaction each.

- decision: `offensive` → removed + hashes banked (PDQ only when good enough); `ok` → approved +
  the bank entries its match came from switched off (unless confirmed). The client's webhook
  event is written in the same transaction (`service.webhooks`).
- undo: within the window, the reviewer's own decision is reverted, its webhook event (not sent
  before the window ends) cancelled, and the item is theirs again.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from photosieve.records import Label
from photosieve.service import appeals, webhooks
from photosieve.service.config import Settings
from photosieve.store import bank, decisions, queue, uploads
from photosieve.store import webhooks as outbox
from photosieve.store.db import begin_write
from photosieve.store.models import ReviewDecision, UploadReason, UploadStatus, User, utcnow
from photosieve.store.queue import ConflictError, NotFoundError


def bankable_pdq(pdq: str | None, quality: int | None, settings: Settings) -> str | None:
    """The PDQ hash to bank for a photo, or None when its quality is too low."""
    if pdq is None or quality is None or quality < settings.pdq_min_quality:
        return None
    return pdq


def decide(
    session: Session, item_id: int, reviewer: User, label: Label, settings: Settings
) -> ReviewDecision:
    """Record a reviewer's label for a claimed item and apply it; commits."""
    begin_write(session)
    # Lock order everywhere: upload, then review item (appeals do the same): no deadlocks.
    upload_id = queue.upload_id_of(session, item_id)
    if upload_id is None:
        raise NotFoundError("not_found", f"no review item {item_id}")
    upload = uploads.get(session, upload_id, for_update=True)
    assert upload is not None
    appeals.check_not_recused(session, item_id, reviewer)
    item = queue.mark_decided(session, item_id, reviewer.id)
    decision = decisions.record(
        session, item_id=item.id, upload=upload, label=label.value, reviewer_id=reviewer.id
    )
    if label is Label.OFFENSIVE:
        uploads.set_status(
            session, upload, UploadStatus.REMOVED.value, UploadReason.REVIEWER.value, final=True
        )
        bank.add(
            session, upload.phash, upload.id, confirmed=True, decision_id=decision.id,
            pdq=bankable_pdq(upload.pdq, upload.pdq_quality, settings),
            pdq_quality=upload.pdq_quality,
        )  # fmt: skip
    else:
        uploads.set_status(
            session, upload, UploadStatus.APPROVED.value, UploadReason.REVIEWER.value, final=True
        )
        bank.deactivate_for_upload(
            session, upload.id, decision.id, matched_upload_id=upload.matched_upload_id,
            matched_entry_id=upload.matched_entry_id,
        )  # fmt: skip
    webhooks.enqueue_decision(session, upload, item, decision, settings)
    session.commit()
    return decision


def undo(session: Session, decision_id: int, reviewer: User, settings: Settings) -> ReviewDecision:
    """Revert the reviewer's own recent decision; the item is theirs again. Commits."""
    begin_write(session)
    decision = decisions.get(session, decision_id)
    if decision is None or decision.reviewer_id != reviewer.id:
        raise NotFoundError("not_found", f"no decision {decision_id} of yours")
    window = dt.timedelta(seconds=settings.undo_window_seconds)
    if utcnow() - decision.decided_at > window:
        raise ConflictError(
            "undo_expired", f"decisions can be undone for {settings.undo_window_seconds} s only"
        )
    if not decisions.mark_undone(session, decision_id):
        raise ConflictError("already_undone", f"decision {decision_id} was already undone")
    upload = uploads.get(session, decision.upload_id, for_update=True)
    item = queue.get_item(session, decision.item_id)
    assert upload is not None and item is not None
    still_decided = decisions.count_standing_others(session, decision.upload_id, decision_id)
    uploads.set_status(
        session, upload, decision.previous_status, decision.previous_reason,
        final=bool(still_decided),
    )  # fmt: skip
    bank.revert_decision(session, decision_id)
    outbox.cancel_for_decision(session, decision_id)
    appeals.withdraw_if_moot(session, upload, keep_item_id=item.id)
    queue.reopen(session, item, reviewer.id, dt.timedelta(seconds=settings.claim_ttl_seconds))
    session.commit()
    session.refresh(decision)
    return decision
