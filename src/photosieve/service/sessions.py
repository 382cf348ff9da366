"""Reviewer sessions kept on the server: sign-in, lookup with timeouts, sign-out, revocation.

The browser's cookie (Starlette's signed session cookie) carries only `sid`, a random 256-bit
token, plus an anonymous CSRF token before sign-in. What authorises a request is the `sessions`
row keyed by the token's SHA-256 (`store.auth`): it must be unrevoked, younger than
`session_max_age_seconds` (absolute timeout) and used within `session_idle_seconds` (idle
timeout). So a cookie forged with a guessed — or even the real — signing key gets nothing
without a live row, and a copied cookie dies at sign-out.

- Sign-in always issues a new token and revokes the one the browser had (rotation: a session id
  seen before sign-in is never the signed-in one).
- Sign-out revokes the row and, when the reviewer has no other live session, puts the items they
  hold back in the queue at once (instead of after `claim_ttl_seconds`).
- Revoking all of a user's sessions (sign out everywhere, password change, disabling) also
  releases their claims.
- The CSRF token of a signed-in browser lives in the row (bound to the session).

Activity moves `last_seen_at` at most once per `touch_interval` per session (one small write
transaction), so the idle deadline lags real activity by at most that interval.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Request
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from photosieve.service.config import Settings
from photosieve.store import accounts, auth, queue
from photosieve.store.auth import EventKind
from photosieve.store.db import begin_write
from photosieve.store.models import AuthSession, User, utcnow

SID_KEY = "sid"
_UNKNOWN = object()  # `request.state.signed_in` before the lookup
PRUNE_AFTER = dt.timedelta(days=7)  # revoked/expired rows kept this long, then deleted


@dataclass(frozen=True)
class SignedIn:
    """The signed-in user of a request and the session row that authorises it."""

    user: User
    row: AuthSession


@dataclass(frozen=True)
class Revoked:
    sessions: int
    released_items: int


def clock(request: Request) -> dt.datetime:
    """Now, from the app's clock (`app.state.clock`; tests move it)."""
    now: Callable[[], dt.datetime] = getattr(request.app.state, "clock", utcnow)
    return now()


def client_addr(request: Request) -> str:
    """The client's address as the server sees it (behind a proxy: run uvicorn with
    `--proxy-headers --forwarded-allow-ips=<proxy>` so this is the real client)."""
    return request.client.host if request.client else "unknown"


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def touch_interval(settings: Settings) -> dt.timedelta:
    return min(dt.timedelta(seconds=60), dt.timedelta(seconds=settings.session_idle_seconds) / 4)


def _idle(settings: Settings) -> dt.timedelta:
    return dt.timedelta(seconds=settings.session_idle_seconds)


def _write(db: Session) -> None:
    """Start a write transaction, ending a read one the request may have open."""
    if db.in_transaction():
        db.commit()
    begin_write(db)


def _cookie_token(request: Request) -> str | None:
    if "session" not in request.scope:
        return None
    token = request.session.get(SID_KEY)
    return token if isinstance(token, str) and token else None


def current(request: Request, db: Session) -> SignedIn | None:
    """The live session of this request and its active user, or None (looked up once)."""
    cached: object = getattr(request.state, "signed_in", _UNKNOWN)
    if cached is not _UNKNOWN:
        return cached if isinstance(cached, SignedIn) else None
    found = _lookup(request, db)
    request.state.signed_in = found
    return found


def _lookup(request: Request, db: Session) -> SignedIn | None:
    token = _cookie_token(request)
    if token is None:
        return None
    settings, now = _settings(request), clock(request)
    row = auth.get_session(db, token)
    user = None if row is None else accounts.get_user(db, row.user_id)
    if (
        row is None
        or user is None
        or not user.active
        or not auth.is_live(row, now, _idle(settings))
    ):
        request.session.pop(SID_KEY, None)  # a dead token is dropped from the cookie
        return None
    if now - row.last_seen_at >= touch_interval(settings):
        _write(db)
        auth.touch(db, row.id, now)
        db.commit()
        set_committed_value(row, "last_seen_at", now)  # in sync, without a pending write
    return SignedIn(user, row)


def sign_in(request: Request, db: Session, user: User) -> AuthSession:
    """Start a new server-side session for `user` (any earlier one of this browser is revoked)."""
    settings, now = _settings(request), clock(request)
    old = _cookie_token(request)
    _write(db)
    if old is not None:
        auth.revoke(db, auth.hash_token(old), now, "rotated")
    auth.prune(db, user.id, now, PRUNE_AFTER)
    lifetime = dt.timedelta(seconds=settings.session_max_age_seconds)
    row, token = auth.create_session(db, user.id, client_addr(request), now, lifetime)
    db.commit()
    request.session.clear()
    request.session[SID_KEY] = token
    request.state.signed_in = SignedIn(user, row)
    return row


def sign_out(request: Request, db: Session) -> None:
    """End this browser's session: revoke its row, release claims if it was the last one."""
    found = current(request, db)
    if found is not None:
        settings, now = _settings(request), clock(request)
        _write(db)
        auth.revoke(db, found.row.id, now, "logout")
        released = 0
        if auth.live_sessions(db, found.user.id, now, _idle(settings)) == 0:
            released = queue.release_claims(db, found.user.id)
        auth.record_event(
            db,
            EventKind.LOGOUT,
            now=now,
            username=found.user.username,
            user_id=found.user.id,
            client_addr=client_addr(request),
            detail=f"released {released} claimed items",
        )
        db.commit()
    if "session" in request.scope:
        request.session.clear()
    request.state.signed_in = None


def revoke_user(
    db: Session,
    user: User,
    *,
    reason: EventKind,
    now: dt.datetime,
    actor_id: int | None = None,
    client: str = "cli",
) -> Revoked:
    """Revoke every session of `user`, release the items they hold and log it; no commit.

    Call inside a write transaction (`db.begin_write`), with the change that caused it.
    """
    count = auth.revoke_user_sessions(db, user.id, now, reason.value)
    released = queue.release_claims(db, user.id)
    auth.record_event(
        db,
        reason,
        now=now,
        username=user.username,
        user_id=user.id,
        client_addr=client,
        actor_id=actor_id,
        detail=f"revoked {count} sessions, released {released} claimed items",
    )
    return Revoked(count, released)


def sign_out_everywhere(
    db: Session,
    user: User,
    *,
    now: dt.datetime | None = None,
    actor_id: int | None = None,
    client: str = "cli",
) -> Revoked:
    """Revoke every session of `user` (an admin's "sign out everywhere"); commits."""
    _write(db)
    done = revoke_user(
        db,
        user,
        reason=EventKind.SIGNOUT_ALL,
        now=now or utcnow(),
        actor_id=actor_id,
        client=client,
    )
    db.commit()
    return done
