"""Passwords (argon2), API keys, reviewer sign-in and the role checks used by routes and the UI.

Upload clients send an API key (`Authorization: Bearer <key>` or `X-API-Key: <key>`); reviewers
and admins sign in with a password and carry a signed session cookie (`request.session
["user_id"]`, Starlette's SessionMiddleware); their state-changing API calls also send the
session's CSRF token (`csrf_token(request)`, session key "csrf_token") as `X-CSRF-Token`.
Nothing anonymous sees photos, the queue or decisions.
"""

from __future__ import annotations

import functools
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import HTTPException, Request, status
from sqlalchemy.orm import Session

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


def sign_in(request: Request, user: User) -> str:
    """Start a reviewer session (old session data is dropped); returns the new CSRF token."""
    request.session.clear()
    request.session["user_id"] = user.id
    return csrf_token(request)


def sign_out(request: Request) -> None:
    request.session.clear()


def _unauthorized(message: str, scheme: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        detail={"reason": "unauthorized", "message": message},
        headers={"WWW-Authenticate": scheme},
    )


def session_user(request: Request, session: Session) -> User | None:
    """The signed-in, active user of this request's session, or None."""
    user_id = request.session.get("user_id") if "session" in request.scope else None
    if not isinstance(user_id, int):
        return None
    user = accounts.get_user(session, user_id)
    return user if user is not None and user.active else None


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
    """The session's CSRF token (created on first use); pages embed it, JS sends it back."""
    token = request.session.get(CSRF_SESSION_KEY)
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(32)
        request.session[CSRF_SESSION_KEY] = token
    return token


def check_csrf(request: Request) -> None:
    """403 unless a state-changing request carries the session's token in `X-CSRF-Token`."""
    if request.method in {"GET", "HEAD", "OPTIONS"}:
        return
    expected = request.session.get(CSRF_SESSION_KEY)
    sent = request.headers.get(CSRF_HEADER, "")
    if not isinstance(expected, str) or not secrets.compare_digest(expected, sent):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail={
                "reason": "csrf",
                "message": "missing or wrong X-CSRF-Token header (reload the page)",
            },
        )
