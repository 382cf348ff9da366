"""Signed webhooks: the forum is told of every final decision instead of polling.

- Which events: `upload.decided`, each time a person's decision on an upload stands — a review
  of the model's band, an audit of an auto-approval, a hash-match check or an appeal. Automatic
  decisions are not sent: the upload call already answered them (`POST /v1/uploads`).
- When: the outbox row is written in the decision's own transaction (`store.webhooks.enqueue`),
  due once the undo window has passed (an undo within it cancels the event, so the forum never
  hears of a decision that did not stand).
- How: `POST` of the JSON body with the Standard Webhooks headers: `webhook-id` (the event id,
  the same on every retry: receivers dedupe on it), `webhook-timestamp` (Unix seconds of this
  attempt) and `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">` keyed by the
  base64 part of the client's `whsec_…` secret.
- Retries: anything but a 2xx (or no answer) is retried after `webhook_backoff_seconds`,
  doubling each time up to `webhook_backoff_max_seconds`, `webhook_max_attempts` attempts in
  all; every attempt is logged on the row (admin page).
- Callback URLs: https only; http only to localhost when `webhook_allow_http_localhost`.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import ipaddress
import logging
import threading
import time
from urllib.parse import urlsplit

import httpx
from sqlalchemy.orm import Session, sessionmaker

from photosieve.service.config import Settings
from photosieve.store import webhooks
from photosieve.store.models import ReviewDecision, ReviewItem, Upload, utcnow

log = logging.getLogger(__name__)
EVENT_DECIDED = "upload.decided"
BATCH = 20  # events taken per poll
LOCAL_HOSTS = ("localhost",)


class WebhookUrlError(ValueError):
    """A callback URL the service refuses to call."""

    reason = "invalid_webhook_url"


def check_url(url: str, *, allow_http_localhost: bool) -> str:
    """`url` when the service may call it; WebhookUrlError saying why not otherwise."""
    url = url.strip()
    parts = urlsplit(url)
    if len(url) > 2048 or not parts.hostname:
        raise WebhookUrlError(f"{url!r} is not an absolute URL (https://host/path)")
    if parts.username or parts.password:
        raise WebhookUrlError("a webhook URL must not carry credentials; the signature proves us")
    if parts.scheme == "https":
        return url
    if parts.scheme == "http" and _is_local(parts.hostname):
        if allow_http_localhost:
            return url
        raise WebhookUrlError(
            "http:// is allowed only to localhost, and only with "
            "PHOTOSIEVE_WEBHOOK_ALLOW_HTTP_LOCALHOST=true (development); use https://"
        )
    raise WebhookUrlError(f"webhook URLs must use https:// (got {parts.scheme or 'none'}://)")


def _is_local(host: str) -> bool:
    if host.lower() in LOCAL_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def sign(secret: str, event_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value (Standard Webhooks v1) for one attempt."""
    key = base64.b64decode(secret.removeprefix(webhooks.SECRET_PREFIX))
    signed = f"{event_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secret: str, event_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "user-agent": "photosieve-webhooks",
        "webhook-id": event_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, event_id, timestamp, body),
    }


def enqueue_decision(
    session: Session, upload: Upload, item: ReviewItem, decision: ReviewDecision, settings: Settings
) -> None:
    """Add the `upload.decided` event of a person's decision to the outbox, in the decision's
    transaction; due when the undo window is over. No commit."""
    data = {
        "upload_id": upload.id,
        "user_id": upload.user_id,
        "decision": upload.status,
        "reason": upload.reason,
        "final": True,
        "review_kind": item.kind,
        "label": decision.label,
        "appealed": upload.appealed_at is not None,
        "decided_at": decision.decided_at.isoformat(),
    }
    webhooks.enqueue(
        session,
        client_id=upload.client_id,
        upload_id=upload.id,
        decision_id=decision.id,
        event_type=EVENT_DECIDED,
        data=data,
        not_before=decision.decided_at + dt.timedelta(seconds=settings.undo_window_seconds + 1),
    )


def backoff(settings: Settings, attempts: int) -> dt.timedelta:
    """Wait before the next attempt after `attempts` failed ones (1, 2, …)."""
    seconds = settings.webhook_backoff_seconds * 2 ** (attempts - 1)
    return dt.timedelta(seconds=min(seconds, settings.webhook_backoff_max_seconds))


class WebhookSender:
    """Delivers due events: `deliver_due()` once (tests, a cron), or `start()` a thread."""

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        client: httpx.Client | None = None,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self._http = client  # made on first use: an app that never sends opens nothing
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def http(self) -> httpx.Client:
        if self._http is None:
            timeout = self.settings.webhook_timeout_seconds
            self._http = httpx.Client(timeout=timeout, follow_redirects=False)
        return self._http

    def deliver_due(self) -> int:
        """Send every due event once; how many attempts were made."""
        lease = dt.timedelta(seconds=self.settings.webhook_timeout_seconds * 3 + 5)
        with self.sessions() as session:
            due = webhooks.claim_due(session, utcnow(), limit=BATCH, lease=lease)
        for event in due:
            self._attempt(event)
        return len(due)

    def _attempt(self, event: webhooks.DueDelivery) -> None:
        status_code: int | None = None
        error: str | None = None
        try:
            if not event.url or not event.secret:
                raise WebhookUrlError("the client's webhook was switched off")
            check_url(event.url, allow_http_localhost=self.settings.webhook_allow_http_localhost)
            body = event.payload.encode()
            sent = headers(event.secret, event.event_id, int(time.time()), body)
            response = self.http.post(event.url, content=body, headers=sent)
            status_code = response.status_code
            if not 200 <= status_code < 300:
                error = f"HTTP {status_code}: {response.text[:200]}"
        except (httpx.HTTPError, WebhookUrlError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        attempts = event.attempts + 1
        now = utcnow()
        retry_at = None
        if error is not None and attempts < self.settings.webhook_max_attempts:
            retry_at = now + backoff(self.settings, attempts)
        with self.sessions() as session:
            webhooks.record_attempt(
                session, event.id, now=now, status_code=status_code, error=error, retry_at=retry_at
            )
        if error is not None:
            log.warning("webhook %s attempt %d failed: %s", event.event_id, attempts, error)

    # ---- background thread -----------------------------------------------------------------
    def start(self) -> None:
        """Deliver in a daemon thread every `webhook_poll_seconds` until `stop()`."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="photosieve-webhooks", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                while self.deliver_due() == BATCH and not self._stop.is_set():
                    pass  # a full batch: more may be due
            except Exception:  # keep delivering after a database hiccup
                log.exception("webhook delivery failed; retrying at the next poll")
            self._stop.wait(self.settings.webhook_poll_seconds)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.settings.webhook_timeout_seconds + 5)
            self._thread = None
        if self._http is not None:
            self._http.close()
            self._http = None
