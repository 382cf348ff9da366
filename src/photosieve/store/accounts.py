"""Repository of people and clients: reviewer/admin users, clients (tenants) and their API keys.

Passwords arrive here already hashed (argon2, `service.security`); API keys are random tokens
stored only as their SHA-256, so a leaked database does not leak usable keys. Every key belongs
to a client (a forum or site); a key of a deactivated client is refused like a revoked one.
"""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from photosieve.store.models import ApiKey, Client, Role, Upload, User, utcnow

API_KEY_PREFIX = "psk_"
DEFAULT_CLIENT = "default"  # existing keys and uploads were migrated to it (0003_tenants)


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
    """The user with this name, or None (a name no user can have never reaches the database:
    PostgreSQL refuses NUL in text with an error)."""
    name = username.strip()
    if not name or len(name) > 64 or not name.isprintable():
        return None
    return session.scalar(select(User).where(User.username == name))


def get_user(session: Session, user_id: int) -> User | None:
    return session.get(User, user_id)


def usernames(session: Session) -> list[str]:
    """Every user's name, sorted."""
    return sorted(session.scalars(select(User.username)))


def list_users(session: Session) -> list[User]:
    """Every user (disabled ones too), oldest first."""
    return list(session.scalars(select(User).order_by(User.id)))


def _clean_name(name: str, what: str) -> str:
    clean = name.strip()
    if not clean or len(clean) > 64 or not clean.isprintable():
        raise ValueError(f"{what} must be 1-64 printable characters")
    return clean


def get_client(session: Session, name: str) -> Client | None:
    return session.scalar(select(Client).where(Client.name == name.strip()))


def ensure_client(session: Session, name: str) -> Client:
    """The client with this name, created (active) when missing (flushed, not committed)."""
    clean = _clean_name(name, "client name")
    client = get_client(session, clean)
    if client is None:
        client = Client(name=clean, active=True, created_at=utcnow())
        session.add(client)
        session.flush()
    return client


def list_clients(session: Session) -> list[Client]:
    return list(session.scalars(select(Client).order_by(Client.name)))


def set_client_active(session: Session, name: str, active: bool) -> Client:
    """Switch a client's keys on or off (raises ValueError for an unknown client)."""
    client = get_client(session, name)
    if client is None:
        raise ValueError(f"no client named {name.strip()!r}")
    client.active = active
    session.flush()
    return client


def hash_api_key(key: str) -> str:
    """The stored form of an API key (keys are 256-bit random, so a plain SHA-256 suffices)."""
    return hashlib.sha256(key.encode()).hexdigest()


def create_api_key(session: Session, name: str, *, client: str | None = None) -> tuple[ApiKey, str]:
    """Create a key of `client` (default: a client named like the key, created if missing).

    Returns the row and the clear key (shown once, never stored).
    """
    clean = _clean_name(name, "API key name")
    if session.scalar(select(ApiKey).where(ApiKey.name == clean)) is not None:
        raise ValueError(f"an API key named {clean!r} already exists")
    owner = ensure_client(session, client if client is not None else clean)
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(name=clean, key_hash=hash_api_key(key), prefix=key[:10], client_id=owner.id)
    session.add(row)
    session.flush()
    return row, key


def list_api_keys(session: Session) -> list[tuple[ApiKey, Client | None]]:
    """Every key (revoked ones too) with its client, by name."""
    rows = session.execute(
        select(ApiKey, Client)
        .outerjoin(Client, Client.id == ApiKey.client_id)
        .order_by(ApiKey.name)
    )
    return [(key, client) for key, client in rows.all()]


def revoke_api_key(session: Session, name: str) -> ApiKey:
    """Revoke a key by name (idempotent; raises ValueError for an unknown key)."""
    row = session.scalar(select(ApiKey).where(ApiKey.name == name.strip()))
    if row is None:
        raise ValueError(f"no API key named {name.strip()!r}")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.flush()
    return row


def find_api_key(session: Session, key: str) -> ApiKey | None:
    """The key row for a clear key, or None when unknown, revoked or its client is inactive."""
    row = session.execute(
        select(ApiKey, Client)
        .join(Client, Client.id == ApiKey.client_id)
        .where(ApiKey.key_hash == hash_api_key(key))
    ).first()
    if row is None:
        return None
    api_key, client = row
    if api_key.revoked_at is not None or not client.active:
        return None
    return api_key


def client_summaries(session: Session) -> list[tuple[Client, int, int]]:
    """Every client with its live (unrevoked) keys and its uploads: (client, keys, uploads)."""
    out = []
    for client in list_clients(session):
        keys = session.scalar(
            select(func.count())
            .select_from(ApiKey)
            .where(ApiKey.client_id == client.id, ApiKey.revoked_at.is_(None))
        )
        uploads = session.scalar(
            select(func.count()).select_from(Upload).where(Upload.client_id == client.id)
        )
        out.append((client, int(keys or 0), int(uploads or 0)))
    return out
