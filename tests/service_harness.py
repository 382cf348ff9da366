"""Test harness of the service: a tiny real bundle, databases (SQLite, PostgreSQL), clients.

The bundle is real (ONNX EfficientNet-Lite0 embeddings of drawn photos + a fitted logistic
head); tests steer decisions by swapping the bundle's `DecisionPolicy`, not by faking scores.
"""

from __future__ import annotations

import datetime as dt
import functools
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from drawing import striped_jpeg
from photosieve.bundle import ModelBundle
from photosieve.policy.bands import DecisionPolicy
from photosieve.scoring import Scorer
from photosieve.service import security
from photosieve.service.app import create_app
from photosieve.service.config import Settings
from photosieve.store import accounts
from photosieve.store.models import utcnow

PASSWORD = "correct horse battery"


def drawn_photo(seed: int, *, size: tuple[int, int] = (96, 80), shape: str = "circle") -> bytes:
    """A small, distinct JPEG (96×80 by default): see `drawing.striped_jpeg`."""
    return striped_jpeg(seed, size=size, shape=shape)


@functools.cache
def password_hash() -> str:
    """PASSWORD hashed once per session (argon2 is slow on purpose)."""
    return security.hash_password(PASSWORD)


def make_scorer(bundle: ModelBundle, embedder: Any, policy: DecisionPolicy) -> Any:
    with_policy = bundle.with_policy(policy)
    with_policy.version = f"tiny-{policy.approve_below}-{policy.remove_at}"
    return Scorer(with_policy, embedder)


REVIEW_ALL = DecisionPolicy(approve_below=0.0)  # every score ≥ 0: review band
APPROVE_ALL = DecisionPolicy(approve_below=1.01)
REMOVE_ALL = DecisionPolicy(approve_below=0.0, remove_at=0.0)


@dataclass
class Service:
    """A running app with an API key, users and helpers."""

    app: FastAPI
    settings: Settings
    bundle: ModelBundle
    embedder: Any
    api_key: str = ""
    clients: list[TestClient] = field(default_factory=list)

    @property
    def sessions(self) -> Any:
        return self.app.state.sessions

    def set_policy(self, policy: DecisionPolicy) -> None:
        self.app.state.moderator.scorer = make_scorer(self.bundle, self.embedder, policy)

    def client(self) -> TestClient:
        client = TestClient(self.app, raise_server_exceptions=False)
        self.clients.append(client)
        return client

    def api(self, key: str | None = None) -> TestClient:
        """A client sending `key` (default: the "forum" client's key)."""
        client = self.client()
        client.headers["Authorization"] = f"Bearer {key or self.api_key}"
        return client

    def new_key(self, name: str, client: str | None = None) -> str:
        """A new API key of `client` (default: a client named like the key)."""
        with self.sessions() as session:
            _, key = accounts.create_api_key(session, name, client=client)
            session.commit()
        return key

    def add_user(self, name: str, role: str = "reviewer") -> None:
        with self.sessions() as session:
            accounts.add_user(session, name, password_hash(), role)
            session.commit()

    def reviewer(self, name: str, role: str = "reviewer") -> TestClient:
        """A signed-in client (user created on first use) sending its CSRF token."""
        with self.sessions() as session:
            exists = accounts.get_user_by_name(session, name) is not None
        if not exists:
            self.add_user(name, role)
        client = self.client()
        sign_in(client, name)
        return client

    def upload(
        self, client: TestClient, data: bytes, user_id: str = "u1", *, key: str | None = None
    ) -> Any:
        """POST a photo (with `key` as its Idempotency-Key, if given)."""
        headers = {"Idempotency-Key": key} if key is not None else {}
        return client.post(
            "/v1/uploads",
            files={"image": ("a.jpg", data, "image/jpeg")},
            data={"user_id": user_id},
            headers=headers,
        )


def sign_in(client: Any, name: str) -> None:
    response = client.post("/v1/auth/login", json={"username": name, "password": PASSWORD})
    assert response.status_code == 200, response.text
    client.headers["X-CSRF-Token"] = response.json()["csrf_token"]


def build_service(
    tmp: Path, db_url: str, bundle: ModelBundle, embedder: Any, **overrides: Any
) -> Service:
    settings = Settings(
        environment="test",
        secret_key=secrets.token_urlsafe(32),
        workdir=tmp,
        database_url=db_url,
        data_dir=tmp / "images",
        audit_rate=0.0,
        **overrides,
    )
    app = create_app(settings, scorer=make_scorer(bundle, embedder, REVIEW_ALL))
    service = Service(app, settings, bundle, embedder)
    with service.sessions() as session:
        _, service.api_key = accounts.create_api_key(session, "forum")
        session.commit()
    return service


class FakeClock:
    """A clock for `app.state.clock` (sessions, sign-in throttling), moved by hand."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)
