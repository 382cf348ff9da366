"""Harness of the service, reviewer-UI and feedback tests: a tiny real bundle, the app on SQLite
or PostgreSQL, API keys, users, clients.

The bundle is real (ONNX EfficientNet-Lite0 embeddings of drawn photos + a fitted logistic
head); tests steer decisions by swapping the bundle's `DecisionPolicy`, not by faking scores.

It is a pytest plugin as well as a module (`pytest_plugins` in tests/conftest.py): its fixtures
(`embedder`, `tiny_bundle`, `postgres_ok`, `db_url`, `service`) serve every test folder, and the
session-scoped ones are built once per run. Every test session loads it, so the heavy imports
(torch through the bundle, FastAPI, the app) wait inside the functions that need them.
"""

from __future__ import annotations

import datetime as dt
import functools
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from drawing import striped_jpeg
from photosieve.policy.bands import DecisionPolicy
from photosieve.store.db import begin_write
from postgres_db import pg_available, pg_database

if TYPE_CHECKING:
    import httpx
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from photosieve.bundle import ModelBundle
    from photosieve.service.config import Settings

PASSWORD = "correct horse battery"

REVIEW_ALL = DecisionPolicy(approve_below=0.0)  # every score ≥ 0: review band
APPROVE_ALL = DecisionPolicy(approve_below=1.01)
REMOVE_ALL = DecisionPolicy(approve_below=0.0, remove_at=0.0)


def drawn_photo(seed: int, *, size: tuple[int, int] = (96, 80), shape: str = "circle") -> bytes:
    """A small, distinct JPEG (96×80 by default): see `drawing.striped_jpeg`."""
    return striped_jpeg(seed, size=size, shape=shape)


def fit_tiny_bundle(embedder: Any) -> ModelBundle:
    """A logistic head fitted on 16 drawn photos (rectangles = offensive, circles = ok)."""
    from photosieve.bundle import ModelBundle
    from photosieve.learn.head import LogisticHead
    from photosieve.vision.preprocess import load_image

    shapes = ["rectangle", "circle"] * 8
    images = [load_image(drawn_photo(1000 + i, shape=shape)) for i, shape in enumerate(shapes)]
    X = embedder.embed_images(images)  # (16, D)
    y = np.array([1 if shape == "rectangle" else 0 for shape in shapes])
    head = LogisticHead(C=1.0).fit(X, y)
    return ModelBundle(head, backbone_id=embedder.config.id, preprocess=embedder.config.preprocess)


@functools.cache
def password_hash() -> str:
    """PASSWORD hashed once per session (argon2 is slow on purpose)."""
    from photosieve.service import security

    return security.hash_password(PASSWORD)


def make_scorer(bundle: ModelBundle, embedder: Any, policy: DecisionPolicy) -> Any:
    from photosieve.scoring import Scorer

    with_policy = bundle.with_policy(policy)
    with_policy.version = f"tiny-{policy.approve_below}-{policy.remove_at}"
    return Scorer(with_policy, embedder)


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
        from fastapi.testclient import TestClient

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
        from photosieve.store import accounts

        with self.sessions() as session:
            begin_write(session)  # a background worker may write too: take SQLite's lock first
            _, key = accounts.create_api_key(session, name, client=client)
            session.commit()
        return key

    def add_user(self, name: str, role: str = "reviewer") -> None:
        """A user `name` with PASSWORD (role "reviewer" or "admin")."""
        from photosieve.store import accounts

        with self.sessions() as session:
            begin_write(session)  # read, then insert: hold the lock before a worker commits
            accounts.add_user(session, name, password_hash(), role)
            session.commit()

    def reviewer(self, name: str, role: str = "reviewer") -> TestClient:
        """A signed-in client (user created on first use) sending its CSRF token."""
        from photosieve.store import accounts

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

    def close(self) -> None:
        """Close every client handed out, the scoring thread and the database engine."""
        for client in self.clients:
            client.close()
        self.app.state.batcher.close()
        self.app.state.engine.dispose()


def sign_in(client: Any, name: str) -> None:
    response = client.post("/v1/auth/login", json={"username": name, "password": PASSWORD})
    assert response.status_code == 200, response.text
    client.headers["X-CSRF-Token"] = response.json()["csrf_token"]


def build_service(
    tmp: Path, db_url: str, bundle: ModelBundle, embedder: Any, **overrides: Any
) -> Service:
    """The real app on `db_url` (workdir and photos in `tmp`, a fresh secret), reviewing every
    upload, with the "forum" client's API key; `overrides` go to `Settings`."""
    from photosieve.service.app import create_app
    from photosieve.service.config import Settings
    from photosieve.store import accounts

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


PHOTOS = [(1, "rectangle"), (2, "circle"), (3, "rectangle")]


def upload_photos(
    client: httpx.Client | TestClient,
    api_key: str,
    photos: list[tuple[int, str]] = PHOTOS,
    expect: str = "pending_review",
) -> list[str]:
    """Upload drawn 160×128 photos through the real upload API; each must get `expect`."""
    ids = []
    for seed, shape in photos:
        photo = drawn_photo(seed, shape=shape, size=(160, 128))  # big enough to see on a card
        response = client.post(
            "/v1/uploads",
            headers={"Authorization": f"Bearer {api_key}"},
            files={"image": (f"p{seed}.jpg", photo, "image/jpeg")},
            data={"user_id": f"forum-user-{seed}"},
        )
        assert response.status_code == 201, response.text
        assert response.json()["decision"] == expect
        ids.append(str(response.json()["id"]))
    return ids


def served_uploads(bundle: ModelBundle, tmp: Path, photos: list[Path]) -> list[dict[str, Any]]:
    """Each photo file uploaded once to the real app serving `bundle` from its saved folder (as
    a fresh service process loads the live bundle: SQLite in `tmp`); the 201 responses' JSON."""
    from fastapi.testclient import TestClient

    from photosieve.service.app import create_app
    from photosieve.service.config import Settings
    from photosieve.store import accounts

    settings = Settings(
        environment="test", secret_key=secrets.token_urlsafe(32), workdir=tmp,
        database_url=f"sqlite:///{tmp / 'service.db'}", data_dir=tmp / "images",
        audit_rate=0.0, bundle_path=bundle.save(tmp / "bundle"), onnx_threads=1,
    )  # fmt: skip
    app = create_app(settings)
    bodies = []
    with TestClient(app) as client:
        with app.state.sessions() as session:
            _, key = accounts.create_api_key(session, "forum")
            session.commit()
        for i, photo in enumerate(photos):
            response = client.post(
                "/v1/uploads", headers={"Authorization": f"Bearer {key}"},
                files={"image": ("p.jpg", photo.read_bytes(), "image/jpeg")},
                data={"user_id": f"user-{i}"},
            )  # fmt: skip
            assert response.status_code == 201, response.text
            bodies.append(response.json())
    return bodies


def backlog_scores(bundle: ModelBundle, folder: Path, tmp: Path, paths: list[str]) -> Any:
    """The batch job's rows (score, decision) for `paths`, in that order: the torch-free workers
    scoring every photo under `folder` with `bundle` saved in `tmp` (chunks of 16, 1 worker).
    Set PHOTOSIEVE_WORKDIR first: the workers read its ONNX graphs."""
    import pandas as pd

    from photosieve.batch.job import BacklogConfig, score_backlog

    out = tmp / "scores.parquet"
    score_backlog(folder, bundle.save(tmp / "bundle"), out, BacklogConfig(chunk_size=16, workers=1))
    return pd.read_parquet(out).set_index("path").loc[paths]


@dataclass
class Live:
    """The app under uvicorn at `url` with the "forum" API key and the ids of its uploads."""

    app: FastAPI
    url: str
    api_key: str
    upload_ids: list[str]


class FakeClock:
    """A clock for `app.state.clock` (sessions, sign-in throttling), moved by hand."""

    def __init__(self) -> None:
        from photosieve.store.models import utcnow

        self.now = utcnow()

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


# --- fixtures (every test folder) -------------------------------------------------------------


@pytest.fixture(scope="session")
def embedder() -> Any:
    from photosieve.vision.embed import Embedder

    return Embedder(threads=1)  # ONNX export cached in ./work/onnx


@pytest.fixture(scope="session")
def tiny_bundle(embedder: Any) -> ModelBundle:
    """See `fit_tiny_bundle`: fitted once per test session."""
    return fit_tiny_bundle(embedder)


@pytest.fixture(scope="session")
def postgres_ok() -> bool:
    return pg_available()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path, postgres_ok: bool) -> Iterator[str]:
    """A fresh database: SQLite in `tmp_path`, then PostgreSQL (skipped if unreachable)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'service.db'}"
        return
    if not postgres_ok:
        pytest.skip("PostgreSQL is not reachable at 127.0.0.1:5432")
    with pg_database() as url:
        yield url


@pytest.fixture
def service(
    tmp_path: Path, db_url: str, tiny_bundle: ModelBundle, embedder: Any
) -> Iterator[Service]:
    """`build_service` on each database of `db_url`, closed after the test."""
    svc = build_service(tmp_path, db_url, tiny_bundle, embedder)
    yield svc
    svc.close()


CHUNKED_BOUNDARY = "photosieveboundary"
CHUNKED_CONTENT_TYPE = f"multipart/form-data; boundary={CHUNKED_BOUNDARY}"


def oversized_chunked_upload(max_upload_bytes: int) -> Iterator[bytes]:
    """A multipart upload body larger than `max_upload_bytes`, sent without Content-Length
    (chunked transfer): the body limit must stop it while it streams."""
    yield (
        f'--{CHUNKED_BOUNDARY}\r\nContent-Disposition: form-data; name="user_id"\r\n\r\nu1\r\n'
        f'--{CHUNKED_BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="x.jpg"'
        "\r\nContent-Type: image/jpeg\r\n\r\n"
    ).encode()
    for _ in range(max_upload_bytes // 65536 + 4):
        yield b"\xff" * 65536
    yield f"\r\n--{CHUNKED_BOUNDARY}--\r\n".encode()
