"""Repository of people and clients: reviewer/admin users and upload API keys.

Passwords arrive here already hashed (argon2, `service.security`); API keys are random tokens
stored only as their SHA-256, so a leaked database does not leak usable keys.
"""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from photosieve.store.models import ApiKey, Role, User

API_KEY_PREFIX = "psk_"


def add_user(session: Session, username: str, password_hash: str, role: str) -> User:
    """Create a user; raises ValueError for a taken name or an unknown role."""
    name = username.strip()
    if not name or len(name) > 64:
        raise ValueError("username must be 1-64 characters")
    if role not in {r.value for r in Role}:
        raise ValueError(f"unknown role {role!r}; known: {[r.value for r in Role]}")
    if get_user_by_name(session, name) is not None:
        raise ValueError(f"user {name!r} already exists")
    user = User(username=name, password_hash=password_hash, role=role, active=True)
    session.add(user)
    session.flush()
    return user


def get_user_by_name(session: Session, username: str) -> User | None:
    return session.scalar(select(User).where(User.username == username.strip()))


def get_user(session: Session, user_id: int) -> User | None:
    return session.get(User, user_id)


def hash_api_key(key: str) -> str:
    """The stored form of an API key (keys are 256-bit random, so a plain SHA-256 suffices)."""
    return hashlib.sha256(key.encode()).hexdigest()


def create_api_key(session: Session, name: str) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the clear key (shown once, never stored)."""
    clean = name.strip()
    if not clean or len(clean) > 64:
        raise ValueError("API key name must be 1-64 characters")
    if session.scalar(select(ApiKey).where(ApiKey.name == clean)) is not None:
        raise ValueError(f"an API key named {clean!r} already exists")
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(name=clean, key_hash=hash_api_key(key), prefix=key[:10])
    session.add(row)
    session.flush()
    return row, key


def find_api_key(session: Session, key: str) -> ApiKey | None:
    """The active key row for a clear key, or None."""
    row = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_api_key(key)))
    if row is None or row.revoked_at is not None:
        return None
    return row
