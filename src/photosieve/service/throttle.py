"""Password sign-in with throttling per username and per client address, audited.

Choice: a database-backed counter over the sign-in audit log (`auth_events`), not the `limits`
library. `limits` keeps its counters in process memory or in Redis/Memcached/MongoDB; in
memory, each uvicorn worker (and each host) would count on its own, and we run no such server.
The audit log has to record every attempt anyway, and it lives in the database all workers
share, so counting its `login_failed` rows gives one limit for the whole deployment at no extra
moving part.

Rules (all from `Settings`):
- a username with `login_max_failures` failures in the last `login_window_seconds` (counted
  since its last successful sign-in), or an address with `login_max_failures_per_address`
  failures (any username; successes do not reset it), is locked for `login_lockout_seconds`
  after its latest failure, doubling with every failure beyond the limit, up to
  `login_lockout_max_seconds`;
- a locked attempt is answered at once (429 + `Retry-After`) and the password is not checked,
  so the right password does not get in during a lockout and no argon2 time is spent;
- the check and the attempt's `login_failed` row are written in one serialised transaction
  before the password is verified (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: a transaction-level
  advisory lock), so a burst of concurrent guesses cannot all pass the check; a correct password
  turns its row into `login_ok`.
"""

from __future__ import annotations

import datetime as dt
import math

from sqlalchemy.orm import Session

from photosieve.service import security
from photosieve.service.config import Settings
from photosieve.store import auth
from photosieve.store.auth import EventKind
from photosieve.store.db import begin_write
from photosieve.store.models import User

MAX_DOUBLINGS = 30


class LoginThrottled(Exception):
    """Too many failed sign-ins; try again after `retry_after` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed sign-ins; try again in {retry_after} s")
        self.retry_after = retry_after


def lockout_left(
    failures: int,
    last_failure: dt.datetime | None,
    limit: int,
    now: dt.datetime,
    settings: Settings,
) -> float:
    """Seconds of lockout left after `failures` failures, the latest at `last_failure`."""
    if failures < limit or last_failure is None:
        return 0.0
    doublings = min(failures - limit, MAX_DOUBLINGS)
    lock = min(settings.login_lockout_seconds * 2**doublings, settings.login_lockout_max_seconds)
    return max(0.0, (last_failure + dt.timedelta(seconds=lock) - now).total_seconds())


def _serialise(db: Session) -> None:
    begin_write(db)
    auth.lock_sign_ins(db)


def login(
    db: Session,
    username: str,
    password: str,
    *,
    client_addr: str,
    now: dt.datetime,
    settings: Settings,
) -> User | None:
    """The user when the password is right, None when wrong; LoginThrottled when locked out.

    Commits: every attempt leaves one `auth_events` row (`login_ok`, `login_failed` or
    `login_throttled`).
    """
    name = username.strip()[:64]
    if db.in_transaction():
        db.commit()
    _serialise(db)
    since = now - dt.timedelta(seconds=settings.login_window_seconds)
    by_name = auth.failures_by_username(db, name, since)
    by_addr = auth.failures_by_address(db, client_addr, since)
    wait = max(
        lockout_left(*by_name, settings.login_max_failures, now, settings),
        lockout_left(*by_addr, settings.login_max_failures_per_address, now, settings),
    )
    if wait > 0:
        retry_after = max(1, math.ceil(wait))
        detail = f"retry after {retry_after} s"
        auth.record_event(
            db,
            EventKind.LOGIN_THROTTLED,
            now=now,
            username=name,
            client_addr=client_addr,
            detail=detail,
        )
        db.commit()
        raise LoginThrottled(retry_after)
    attempt = auth.record_event(
        db, EventKind.LOGIN_FAILED, now=now, username=name, client_addr=client_addr
    )
    db.commit()  # counted as a failure until the password proves right
    user = security.authenticate(db, name, password)
    if db.in_transaction():
        db.commit()
    if user is None:
        return None
    begin_write(db)
    auth.mark_login_ok(db, attempt.id, user.id)
    db.commit()
    return user
