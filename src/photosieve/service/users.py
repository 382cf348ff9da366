"""User administration: add, list, disable/enable, set a password, sign out everywhere.

Shared by the CLI (`photosieve user …`) and the admin API. Every change is one committed
transaction that also writes the sign-in audit log; disabling a user and setting a password
revoke all of that user's sessions and release the items they hold (`sessions.revoke_user`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy.orm import Session

from photosieve.service import security, sessions
from photosieve.store import accounts, auth
from photosieve.store.auth import EventKind
from photosieve.store.db import begin_write
from photosieve.store.models import User, utcnow


@dataclass(frozen=True)
class UserSummary:
    """A user as `photosieve user list` shows it."""

    id: int
    username: str
    role: str
    active: bool
    live_sessions: int
    last_login: dt.datetime | None


def _write(db: Session) -> None:
    if db.in_transaction():
        db.commit()
    begin_write(db)


def find(db: Session, username: str) -> User:
    """The user with this name; ValueError naming the known users when there is none."""
    user = accounts.get_user_by_name(db, username)
    if user is None:
        known = accounts.usernames(db)
        raise ValueError(f"no user {username!r}; known users: {', '.join(known) or '(none)'}")
    return user


def add(db: Session, username: str, password: str, role: str, *, client: str = "cli") -> User:
    """Create a reviewer or admin (ValueError for a taken name, bad role or short password)."""
    _write(db)
    user = security.create_user(db, username, password, role)
    auth.record_event(
        db,
        EventKind.USER_ADDED,
        now=utcnow(),
        username=user.username,
        user_id=user.id,
        client_addr=client,
        detail=f"role {role}",
    )
    db.commit()
    return user


def summaries(
    db: Session, *, idle_seconds: int, now: dt.datetime | None = None
) -> list[UserSummary]:
    """Every user with their live session count and last successful sign-in."""
    now = now or utcnow()
    idle = dt.timedelta(seconds=idle_seconds)
    last_logins = auth.last_logins(db)
    rows = []
    for user in accounts.list_users(db):
        last = last_logins.get(user.id)
        rows.append(
            UserSummary(
                id=user.id,
                username=user.username,
                role=user.role,
                active=user.active,
                live_sessions=auth.live_sessions(db, user.id, now, idle),
                last_login=None if last is None else last.replace(tzinfo=dt.UTC),
            )
        )
    return rows


def set_active(
    db: Session, username: str, active: bool, *, actor_id: int | None = None, client: str = "cli"
) -> sessions.Revoked:
    """Disable (sessions revoked, claims released) or re-enable a user."""
    user = find(db, username)
    _write(db)
    user.active = active
    db.flush()
    now = utcnow()
    if active:
        auth.record_event(
            db,
            EventKind.USER_ENABLED,
            now=now,
            username=user.username,
            user_id=user.id,
            client_addr=client,
            actor_id=actor_id,
        )
        done = sessions.Revoked(0, 0)
    else:
        done = sessions.revoke_user(
            db, user, reason=EventKind.USER_DISABLED, now=now, actor_id=actor_id, client=client
        )
    db.commit()
    return done


def set_password(
    db: Session, username: str, password: str, *, actor_id: int | None = None, client: str = "cli"
) -> sessions.Revoked:
    """Set a new password; every session of the user is revoked and their claims released."""
    user = find(db, username)
    password_hash = security.hash_password(password)  # ValueError for a short one
    _write(db)
    user.password_hash = password_hash
    db.flush()
    done = sessions.revoke_user(
        db, user, reason=EventKind.PASSWORD_SET, now=utcnow(), actor_id=actor_id, client=client
    )
    db.commit()
    return done


def sign_out_everywhere(
    db: Session, username: str, *, actor_id: int | None = None, client: str = "cli"
) -> sessions.Revoked:
    """Revoke every session of a user and release the items they hold."""
    return sessions.sign_out_everywhere(db, find(db, username), actor_id=actor_id, client=client)
