"""Repository of reviewer sign-in state: server-side sessions and the sign-in audit log.

A session token is 256-bit random and handed out once (in the cookie); the `sessions` row keeps
only its SHA-256, so a leaked database does not leak usable sessions. Functions here flush or
execute but never commit: the caller owns the transaction (`service.sessions`,
`service.throttle`).
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import secrets

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from photosieve.store.models import AuthEvent, AuthSession

SIGN_IN_LOCK_KEY = 0x70_73_6C_6F_67_69_6E  # "pslogin": serialises the check-and-record step


class EventKind(enum.StrEnum):
    """What an `auth_events` row records."""

    LOGIN_OK = "login_ok"
    LOGIN_FAILED = "login_failed"  # also written *before* the password check (see throttle)
    LOGIN_THROTTLED = "login_throttled"  # refused with 429, password never checked
    LOGOUT = "logout"
    SIGNOUT_ALL = "signout_all"
    PASSWORD_SET = "password_set"
    USER_ADDED = "user_added"
    USER_DISABLED = "user_disabled"
    USER_ENABLED = "user_enabled"


def hash_token(token: str) -> str:
    """The stored form of a session token (tokens are 256-bit random: a plain SHA-256 suffices)."""
    return hashlib.sha256(token.encode()).hexdigest()


def create_session(
    session: Session, user_id: int, client_addr: str, now: dt.datetime, lifetime: dt.timedelta
) -> tuple[AuthSession, str]:
    """A new session row for a user; returns it and the clear token (for the cookie only)."""
    token = secrets.token_urlsafe(32)
    row = AuthSession(
        id=hash_token(token),
        user_id=user_id,
        csrf_token=secrets.token_urlsafe(32),
        client_addr=_as_logged(client_addr),
        created_at=now,
        last_seen_at=now,
        expires_at=now + lifetime,
    )
    session.add(row)
    session.flush()
    return row, token


def get_session(session: Session, token: str) -> AuthSession | None:
    """The session row of a clear token (revoked or expired ones too), or None."""
    return session.get(AuthSession, hash_token(token))


def is_live(row: AuthSession, now: dt.datetime, idle: dt.timedelta) -> bool:
    """Not revoked, before its absolute expiry and used within the idle timeout."""
    return row.revoked_at is None and now < row.expires_at and now < row.last_seen_at + idle


def touch(session: Session, session_id: str, now: dt.datetime) -> None:
    """Record activity on a session (moves its idle deadline)."""
    session.execute(
        update(AuthSession)
        .where(AuthSession.id == session_id, AuthSession.revoked_at.is_(None))
        .values(last_seen_at=now)
        .execution_options(synchronize_session=False)
    )


def revoke(session: Session, session_id: str, now: dt.datetime, reason: str) -> bool:
    """Revoke one session; False when it was revoked already or does not exist."""
    return bool(_revoke_where(session, AuthSession.id == session_id, now, reason))


def revoke_user_sessions(session: Session, user_id: int, now: dt.datetime, reason: str) -> int:
    """Revoke every unrevoked session of a user; returns how many."""
    return _revoke_where(session, AuthSession.user_id == user_id, now, reason)


def _revoke_where(
    session: Session, which: ColumnElement[bool], now: dt.datetime, reason: str
) -> int:
    """Revoke the unrevoked sessions matching `which`; how many were."""
    result = session.execute(
        update(AuthSession)
        .where(which, AuthSession.revoked_at.is_(None))
        .values(revoked_at=now, revoked_reason=reason)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def live_sessions(session: Session, user_id: int, now: dt.datetime, idle: dt.timedelta) -> int:
    """How many of a user's sessions are still usable."""
    count = session.scalar(
        select(func.count())
        .select_from(AuthSession)
        .where(
            AuthSession.user_id == user_id,
            AuthSession.revoked_at.is_(None),
            AuthSession.expires_at > now,
            AuthSession.last_seen_at > now - idle,
        )
    )
    return int(count or 0)


def prune(session: Session, user_id: int, now: dt.datetime, keep: dt.timedelta) -> None:
    """Delete a user's sessions that expired or were revoked more than `keep` ago."""
    old = now - keep
    rows = session.scalars(
        select(AuthSession).where(
            AuthSession.user_id == user_id,
            (AuthSession.expires_at < old) | (AuthSession.revoked_at < old),
        )
    )
    for row in rows:
        session.delete(row)
    session.flush()


def _as_logged(text: str) -> str:
    """A client-sent name as the audit log stores and matches it: at most 64 characters, control
    characters shown as U+FFFD (PostgreSQL refuses NUL in text; the log must still count it)."""
    return "".join(c if c.isprintable() else "\ufffd" for c in text[:64])


def record_event(
    session: Session,
    kind: EventKind,
    *,
    now: dt.datetime,
    username: str,
    client_addr: str,
    user_id: int | None = None,
    actor_id: int | None = None,
    detail: str | None = None,
) -> AuthEvent:
    """Append a line to the sign-in audit log (flushed, not committed)."""
    row = AuthEvent(
        at=now,
        kind=kind.value,
        username=_as_logged(username),
        user_id=user_id,
        client_addr=_as_logged(client_addr),
        actor_id=actor_id,
        detail=None if detail is None else detail[:200],
    )
    session.add(row)
    session.flush()
    return row


def lock_sign_ins(session: Session) -> None:
    """Serialise sign-in throttle checks until the transaction ends; call right after
    `db.begin_write`. PostgreSQL: a transaction-level advisory lock; SQLite needs nothing more
    (`BEGIN IMMEDIATE` already holds the database's write lock)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SIGN_IN_LOCK_KEY})


def mark_login_ok(session: Session, event_id: int, user_id: int) -> None:
    """Turn a sign-in attempt's `login_failed` line into `login_ok` for `user_id`."""
    session.execute(
        update(AuthEvent)
        .where(AuthEvent.id == event_id)
        .values(kind=EventKind.LOGIN_OK.value, user_id=user_id)
        .execution_options(synchronize_session=False)
    )


def last_logins(session: Session) -> dict[int, dt.datetime]:
    """Each user's latest successful sign-in, by user id (as stored: naive UTC from `max`)."""
    rows = session.execute(
        select(AuthEvent.user_id, func.max(AuthEvent.at))
        .where(AuthEvent.kind == EventKind.LOGIN_OK.value)
        .group_by(AuthEvent.user_id)
    ).all()
    return dict(rows)  # type: ignore[arg-type]


def failures_by_username(
    session: Session, username: str, since: dt.datetime
) -> tuple[int, dt.datetime | None]:
    """Failed sign-ins for a username after `since` and after its last success; (count, last)."""
    name = _as_logged(username)
    last_ok = session.scalar(
        select(func.max(AuthEvent.at)).where(
            AuthEvent.username == name, AuthEvent.kind == EventKind.LOGIN_OK.value
        )
    )
    start = since if last_ok is None else max(since, _aware(last_ok))
    return _failures(session, AuthEvent.username == name, start)


def failures_by_address(
    session: Session, client_addr: str, since: dt.datetime
) -> tuple[int, dt.datetime | None]:
    """Failed sign-ins from a client address after `since` (any username); (count, last)."""
    return _failures(session, AuthEvent.client_addr == _as_logged(client_addr), since)


def _failures(
    session: Session, where: object, since: dt.datetime
) -> tuple[int, dt.datetime | None]:
    count, last = session.execute(
        select(func.count(), func.max(AuthEvent.at)).where(
            where,  # type: ignore[arg-type]
            AuthEvent.kind == EventKind.LOGIN_FAILED.value,
            AuthEvent.at > since,
        )
    ).one()
    return int(count or 0), None if last is None else _aware(last)


def _aware(value: dt.datetime) -> dt.datetime:
    """Aggregates (`max`) bypass `UTCDateTime`, so their naive UTC comes back as is."""
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def events(session: Session, *, username: str | None = None, limit: int = 100) -> list[AuthEvent]:
    """Recent audit-log lines, newest first (one username's, or everyone's)."""
    query = select(AuthEvent).order_by(AuthEvent.id.desc()).limit(limit)
    if username is not None:
        query = query.where(AuthEvent.username == _as_logged(username))
    return list(session.scalars(query))
