"""Fixtures of the service tests: one tiny real bundle per session, SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from service_harness import Service, build_service, drawn_photo

from photosieve.bundle import ModelBundle
from postgres_db import pg_available, pg_database


@pytest.fixture(scope="session")
def embedder() -> Any:
    from photosieve.vision.embed import Embedder

    return Embedder(threads=1)  # ONNX export cached in ./work/onnx


@pytest.fixture(scope="session")
def tiny_bundle(embedder: Any) -> ModelBundle:
    """A logistic head fitted on 16 drawn photos (rectangles = offensive, circles = ok)."""
    from PIL import Image

    from photosieve.learn.head import LogisticHead
    from photosieve.vision.preprocess import load_image

    shapes = ["rectangle", "circle"] * 8
    images: list[Image.Image] = [
        load_image(drawn_photo(1000 + i, shape=shape)) for i, shape in enumerate(shapes)
    ]
    X = embedder.embed_images(images)
    y = np.array([1 if shape == "rectangle" else 0 for shape in shapes])
    head = LogisticHead(C=1.0).fit(X, y)
    return ModelBundle(head, backbone_id=embedder.config.id, preprocess=embedder.config.preprocess)


@pytest.fixture(scope="session")
def postgres_ok() -> bool:
    return pg_available()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path, postgres_ok: bool) -> Iterator[str]:
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
    svc = build_service(tmp_path, db_url, tiny_bundle, embedder)
    yield svc
    for client in svc.clients:
        client.close()
    svc.app.state.engine.dispose()
