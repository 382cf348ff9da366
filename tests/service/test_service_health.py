"""Honest health (finding 8 of issue 9): `/healthz` is liveness, `/readyz` proves the service can
write its database and image store, on a really read-only SQLite file and PostgreSQL database.

Tests run as root, which ignores file permissions, so read-only is made real another way: SQLite
opened with `?mode=ro`, PostgreSQL with `default_transaction_read_only`, a store path that is a
file.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select, text

from photosieve.bundle import ModelBundle
from photosieve.service.app import create_app
from photosieve.store.models import Upload
from service_harness import APPROVE_ALL, Service, drawn_photo, make_scorer


def _ready(service: Service) -> Any:
    return service.client().get("/readyz")


def test_ready_when_everything_works(service: Service) -> None:
    response = _ready(service)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    assert {name: check["ok"] for name, check in body["checks"].items()} == {
        "database": True,
        "image_store": True,
        "model": True,
    }
    assert service.app.state.images.staged() == []  # the probe file is gone
    assert service.client().get("/healthz").json()["status"] == "ok"


def _assert_database_not_ready(service: Service) -> None:
    assert service.client().get("/healthz").status_code == 200  # alive, not ready
    response = _ready(service)
    assert response.status_code == 503, response.text
    checks = response.json()["checks"]
    assert checks["database"]["ok"] is False and "not writable" in checks["database"]["detail"]
    assert checks["image_store"]["ok"] and checks["model"]["ok"]
    images = service.app.state.images
    before = images.files()
    upload = service.upload(service.api(), drawn_photo(7))
    assert upload.status_code == 503, upload.text  # was a plain 500
    assert upload.json()["detail"]["reason"] == "database_unavailable"
    assert images.files() == before and images.staged() == []  # nothing half-written


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_read_only_sqlite_database_is_not_ready(
    service: Service, tiny_bundle: ModelBundle, embedder: Any
) -> None:
    service.set_policy(APPROVE_ALL)
    assert service.upload(service.api(), drawn_photo(6)).status_code == 201
    database = Path(service.settings.resolved_database_url.removeprefix("sqlite:///"))
    service.app.state.engine.dispose()
    settings = service.settings.model_copy(
        update={"database_url": f"sqlite:///file:{database}?mode=ro&uri=true"}
    )
    app = create_app(settings, scorer=make_scorer(tiny_bundle, embedder, APPROVE_ALL))
    read_only = Service(app, settings, tiny_bundle, embedder, api_key=service.api_key)
    try:
        _assert_database_not_ready(read_only)
    finally:
        for client in read_only.clients:
            client.close()
        read_only.app.state.engine.dispose()


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_read_only_postgres_database_is_not_ready(service: Service, db_url: str) -> None:
    service.set_policy(APPROVE_ALL)
    assert _ready(service).status_code == 200
    name = db_url.rsplit("/", 1)[1]
    admin = create_engine(
        "postgresql+psycopg://postgres@127.0.0.1:5432/postgres", isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as connection:
        connection.execute(text(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on'))
    admin.dispose()
    service.app.state.engine.dispose()  # new connections see the setting
    _assert_database_not_ready(service)
    with service.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Upload)) == 0


def test_unwritable_image_store_is_not_ready(service: Service) -> None:
    root = service.app.state.images.root
    shutil.rmtree(root, ignore_errors=True)
    root.write_bytes(b"not a folder")  # root ignores permissions; a file in the way does not
    response = _ready(service)
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["image_store"] == {"ok": False, "detail": "not writable: NotADirectoryError"}
    assert checks["database"]["ok"] and checks["model"]["ok"]
    assert str(root) not in response.text  # paths go to the log, not to anonymous callers
