"""Repository of webhooks: a client's callback and secret, the outbox of events, the delivery log.

An event is written by `enqueue` in the caller's transaction (the reviewer's decision), so it is
committed with the decision or not at all: nothing is lost between the two. The delivery worker
(`service.webhooks`) takes due rows with `claim_due` — each claimed row's next attempt is pushed a
lease ahead, so two service processes never send one row at once, and a process that dies while
sending leaves the row to be retried after the lease (at-least-once delivery; receivers dedupe on
`event_id`) — and reports each answer with `record_attempt`. Functions here never commit unless
they say so.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from photosieve.store.db import begin_write
from photosieve.store.models import Client, DeliveryStatus, WebhookDelivery, utcnow

SECRET_PREFIX = "whsec_"  # Standard Webhooks: the key is the base64 after the prefix
MAX_ERROR_CHARS = 500


def new_secret() -> str:
    """A fresh signing secret: `whsec_` + base64 of 32 random bytes (Standard Webhooks form)."""
    import base64

    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def new_event_id() -> str:
    return "msg_" + secrets.token_urlsafe(18)


def set_webhook(session: Session, client: Client, url: str | None, *, rotate: bool) -> Client:
    """Point the client's webhook at `url` (None: switch it off); a secret is created on first
    use or when `rotate`. `url` must already be validated. No commit; open the transaction with
    `db.begin_write` (SQLite) before reading the client."""
    client.webhook_url = url
    if url is None:
        client.webhook_secret = None
    elif rotate or not client.webhook_secret:
        client.webhook_secret = new_secret()
    session.flush()
    return client


def enqueue(
    session: Session,
    *,
    client_id: int | None,
    upload_id: str,
    decision_id: int | None,
    event_type: str,
    data: dict[str, Any],
    not_before: dt.datetime,
) -> WebhookDelivery | None:
    """Add an event for the client's webhook (flushed, not committed); None when the client has
    no webhook. The body is fixed here, so every retry sends the same bytes."""
    if client_id is None:
        return None
    client = session.get(Client, client_id)
    if client is None or not client.webhook_url:
        return None
    event_id = new_event_id()
    body = {"type": event_type, "timestamp": utcnow().isoformat(), "data": data}
    row = WebhookDelivery(
        event_id=event_id,
        client_id=client_id,
        upload_id=upload_id,
        decision_id=decision_id,
        event_type=event_type,
        payload=json.dumps(body, separators=(",", ":"), sort_keys=True),
        status=DeliveryStatus.PENDING.value,
        attempts=0,
        next_attempt_at=not_before,
    )
    session.add(row)
    session.flush()
    return row


def cancel_for_decision(session: Session, decision_id: int) -> int:
    """Cancel the not-yet-sent events of an undone decision; how many. No commit."""
    result = session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.decision_id == decision_id,
            WebhookDelivery.status == DeliveryStatus.PENDING.value,
            WebhookDelivery.attempts == 0,
        )
        .values(status=DeliveryStatus.CANCELLED.value)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class DueDelivery:
    """What the worker needs to send one event."""

    id: int
    event_id: str
    url: str | None
    secret: str | None
    payload: str
    attempts: int  # made before this one


def claim_due(
    session: Session, now: dt.datetime, *, limit: int, lease: dt.timedelta
) -> list[DueDelivery]:
    """Take up to `limit` due pending events and hold them for `lease`; commits.

    A plain read first: an idle poll never takes SQLite's write lock."""
    due_now = (
        WebhookDelivery.status == DeliveryStatus.PENDING.value,
        WebhookDelivery.next_attempt_at <= now,
    )
    if session.scalar(select(WebhookDelivery.id).where(*due_now).limit(1)) is None:
        session.rollback()
        return []
    session.rollback()
    begin_write(session)
    rows = list(
        session.execute(
            select(WebhookDelivery, Client)
            .join(Client, Client.id == WebhookDelivery.client_id)
            .where(*due_now)
            .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
            .limit(limit)
            .with_for_update(skip_locked=True, of=WebhookDelivery)
        ).all()
    )
    due = []
    for row, client in rows:
        row.next_attempt_at = now + lease
        due.append(DueDelivery(row.id, row.event_id, client.webhook_url, client.webhook_secret,
                               row.payload, row.attempts))  # fmt: skip
    session.commit()
    return due


def record_attempt(
    session: Session,
    delivery_id: int,
    *,
    now: dt.datetime,
    status_code: int | None,
    error: str | None,
    retry_at: dt.datetime | None,
) -> WebhookDelivery:
    """Log one attempt: delivered on a 2xx, else pending until `retry_at` (None: failed for
    good); commits."""
    begin_write(session)
    row = session.get(WebhookDelivery, delivery_id, with_for_update=True)
    assert row is not None
    row.attempts += 1
    row.last_attempt_at = now
    row.last_status_code = status_code
    row.last_error = error[:MAX_ERROR_CHARS] if error else None
    if status_code is not None and 200 <= status_code < 300:
        row.status, row.delivered_at, row.last_error = DeliveryStatus.DELIVERED.value, now, None
    elif retry_at is None:
        row.status = DeliveryStatus.FAILED.value
    else:
        row.next_attempt_at = retry_at
    session.commit()
    return row


def recent(session: Session, limit: int = 50) -> list[tuple[WebhookDelivery, str]]:
    """The latest events with their client's name, newest first (the admin page's log)."""
    rows = session.execute(
        select(WebhookDelivery, Client.name)
        .join(Client, Client.id == WebhookDelivery.client_id)
        .order_by(WebhookDelivery.id.desc())
        .limit(limit)
    ).all()
    return [(row, name) for row, name in rows]


def count_by_status(session: Session) -> dict[str, int]:
    """Events per delivery status (every status present, 0 when none)."""
    counts = {s.value: 0 for s in DeliveryStatus}
    for status, n in session.execute(
        select(WebhookDelivery.status, func.count()).group_by(WebhookDelivery.status)
    ).all():
        counts[str(status)] = int(n)
    return counts
