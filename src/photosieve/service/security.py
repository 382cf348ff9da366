"""Passwords (argon2), API keys, reviewer sign-in and the role checks used by routes and the UI.

Upload clients send an API key (`Authorization: Bearer <key>` or `X-API-Key: <key>`); reviewers
and admins sign in with a password (`service.throttle.login`) and get a server-side session
(`service.sessions`): the cookie carries only a random session token, the `sessions` row is
what authorises. Their state-changing API calls also send the session's CSRF token
(`csrf_token(request)`, stored in the session row) as `X-CSRF-Token`; before sign-in, the
sign-in form's token lives in the signed cookie. Nothing anonymous sees photos, the queue or
decisions.
"""

from __future__ import annotations

import functools
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import HTTPException, Request, status
from sqlalchemy.orm import Session

from photosieve.service import sessions
from photosieve.store import accounts
from photosieve.store.models import ApiKey, Role, User

_HASHER = PasswordHasher()
MIN_PASSWORD_LENGTH = 8


@functools.cache
def _dummy_hash() -> str:
    """Verified against when a user does not exist, so timing does not reveal usernames."""
    return _HASHER.hash("photosieve-dummy-password")


def hash_password(password: str) -> str:
    """An argon2id hash of a password (raises ValueError for a short one)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"password must be at least {MIN_PASSWORD_LENGTH} characters")
    return _HASHER.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True when `password` matches `password_hash`."""
    try:
        return _HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def authenticate(session: Session, username: str, password: str) -> User | None:
    """The active user with this name and password, or None."""
    user = accounts.get_user_by_name(session, username)
    if user is None:
        verify_password(_dummy_hash(), password)
        return None
    if not verify_password(user.password_hash, password) or not user.active:
        return None
    return user


def create_user(session: Session, username: str, password: str, role: str) -> User:
    """Create a reviewer or admin with a hashed password (flushed, not committed)."""
    return accounts.add_user(session, username, hash_password(password), role)


def _unauthorized(message: str, scheme: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        detail={"reason": "unauthorized", "message": message},
        headers={"WWW-Authenticate": scheme},
    )


def session_user(request: Request, session: Session) -> User | None:
    """The signed-in, active user of this request's live server-side session, or None."""
    found = sessions.current(request, session)
    return None if found is None else found.user


def require_user(request: Request, session: Session, *, admin: bool = False) -> User:
    """The signed-in user; 401 when signed out, 403 when `admin` is needed and missing."""
    user = session_user(request, session)
    if user is None:
        raise _unauthorized("sign in as a reviewer first", 'Cookie realm="photosieve"')
    if admin and user.role != Role.ADMIN.value:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail={"reason": "forbidden", "message": "only admins may do this"},
        )
    return user


def api_key_from_headers(request: Request) -> str | None:
    """The API key a client sent, if any."""
    header = request.headers.get("x-api-key")
    if header:
        return header.strip()
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def require_api_key(request: Request, session: Session) -> ApiKey:
    """The client's API key row; 401 when missing or unknown."""
    key = api_key_from_headers(request)
    if key is None:
        raise _unauthorized(
            "send an API key as `Authorization: Bearer <key>` or `X-API-Key: <key>`", "Bearer"
        )
    row = accounts.find_api_key(session, key)
    if row is None:
        raise _unauthorized("unknown or revoked API key", "Bearer")
    return row


CSRF_SESSION_KEY = "csrf_token"
CSRF_HEADER = "x-csrf-token"


def csrf_token(request: Request) -> str:
    """The CSRF token pages embed and JS sends back: the signed-in session's (bound to its row),
    or before sign-in an anonymous one kept in the signed cookie (created on first use)."""
    found = getattr(request.state, "signed_in", None)
    if isinstance(found, sessions.SignedIn):
        return found.row.csrf_token
    token = request.session.get(CSRF_SESSION_KEY)
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(32)
        request.session[CSRF_SESSION_KEY] = token
    return token


def csrf_ok(request: Request, sent: object) -> bool:
    """Whether `sent` is this request's CSRF token (see `csrf_token`); never creates one."""
    found = getattr(request.state, "signed_in", None)
    if isinstance(found, sessions.SignedIn):
        expected: object = found.row.csrf_token
    else:
        expected = request.session.get(CSRF_SESSION_KEY) if "session" in request.scope else None
    return (
        isinstance(expected, str)
        and isinstance(sent, str)
        and secrets.compare_digest(expected.encode(), sent.encode())
    )


def check_csrf(request: Request) -> None:
    """403 unless a state-changing request carries the session's token in `X-CSRF-Token`."""
    if request.method in {"GET", "HEAD", "OPTIONS"}:
        return
    if not csrf_ok(request, request.headers.get(CSRF_HEADER, "")):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail={
                "reason": "csrf",
                "message": "missing or wrong X-CSRF-Token header (reload the page)",
            },
        )
