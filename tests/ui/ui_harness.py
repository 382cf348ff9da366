"""Harness of the reviewer-UI tests: a tiny real bundle, a live app under uvicorn, drawn photos.

The bundle is real (ONNX EfficientNet-Lite0 embeddings of drawn photos + a fitted logistic head);
a `DecisionPolicy` with `approve_below=0` sends every upload to the review queue.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from fastapi import FastAPI
from fastapi.testclient import TestClient

from drawing import striped_jpeg
from photosieve.bundle import ModelBundle
from photosieve.policy.bands import DecisionPolicy
from photosieve.service import security
from photosieve.service.app import create_app
from photosieve.service.config import Settings
from photosieve.store import accounts

PASSWORD = "correct horse battery"
REVIEW_ALL = DecisionPolicy(approve_below=0.0)  # every score ≥ 0 lands in the review band


def drawn_jpeg(seed: int, *, shape: str = "circle", size: tuple[int, int] = (160, 128)) -> bytes:
    """A distinct drawn JPEG (160×128 by default): see `drawing.striped_jpeg`."""
    return striped_jpeg(seed, size=size, shape=shape)


def tiny_bundle(embedder: Any) -> ModelBundle:
    """A logistic head fitted on 12 drawn photos (rectangles = offensive), reviewing everything."""
    from photosieve.learn.head import LogisticHead
    from photosieve.vision.preprocess import load_image

    shapes = ["rectangle", "circle"] * 6
    images = [load_image(drawn_jpeg(500 + i, shape=s)) for i, s in enumerate(shapes)]
    X = embedder.embed_images(images)
    y = np.array([1 if s == "rectangle" else 0 for s in shapes])
    head = LogisticHead(C=1.0).fit(X, y)
    bundle = ModelBundle(
        head, backbone_id=embedder.config.id, preprocess=embedder.config.preprocess
    )
    return bundle.with_policy(REVIEW_ALL)


def build_app(tmp: Path, bundle: ModelBundle, embedder: Any) -> tuple[FastAPI, str]:
    """The real app on SQLite in `tmp` with a reviewer, an admin and an upload API key."""
    from photosieve.scoring import Scorer

    settings = Settings(
        environment="test",
        secret_key=secrets.token_urlsafe(32),
        workdir=tmp,
        database_url=f"sqlite:///{tmp / 'service.db'}",
        data_dir=tmp / "images",
        audit_rate=0.0,
    )
    app = create_app(settings, scorer=Scorer(bundle, embedder))
    with app.state.sessions() as session:
        security.create_user(session, "rita", PASSWORD, "reviewer")
        security.create_user(session, "ada", PASSWORD, "admin")
        _, api_key = accounts.create_api_key(session, "forum")
        session.commit()
    return app, api_key


PHOTOS = [(1, "rectangle"), (2, "circle"), (3, "rectangle")]


def upload_photos(
    client: httpx.Client | TestClient,
    api_key: str,
    photos: list[tuple[int, str]] = PHOTOS,
    expect: str = "pending_review",
) -> list[str]:
    """Upload drawn photos through the real upload API; all land in the review queue."""
    ids = []
    for seed, shape in photos:
        response = client.post(
            "/v1/uploads",
            headers={"Authorization": f"Bearer {api_key}"},
            files={"image": (f"p{seed}.jpg", drawn_jpeg(seed, shape=shape), "image/jpeg")},
            data={"user_id": f"forum-user-{seed}"},
        )
        assert response.status_code == 201, response.text
        assert response.json()["decision"] == expect
        ids.append(str(response.json()["id"]))
    return ids


@dataclass
class Live:
    app: FastAPI
    url: str
    api_key: str
    upload_ids: list[str]
