"""Retrain → candidate → shadow → gate → promote → rollback, end to end over real HTTP, on SQLite
and PostgreSQL, with two workers on one database that switch models without a restart.

Uploads and reviews (model band census + audits of approvals) go through the API of a live
uvicorn server; `retrain` merges the reviewers' labels with the earlier drawn training data,
trains a small head and registers a candidate; the `photosieve model` commands shadow, gate,
promote and roll it back. The gate refuses a target the held-out data cannot certify and a
candidate that reviews more than the live model (promoted only with an audited override).
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from drawing import labelled_folder
from live_server import LiveServer
from photosieve.bundle import ModelBundle
from photosieve.cli import app as cli_app
from photosieve.config import CertifyConfig, TrainConfig, Workdir
from photosieve.data.ingest import ingest
from photosieve.data.manifest import INGESTED_COLUMNS, write_manifest
from photosieve.feedback.retrain import RetrainConfig, retrain
from photosieve.policy.bands import DecisionPolicy
from photosieve.records import Split
from photosieve.scoring import Scorer
from photosieve.service.app import create_app
from photosieve.service.config import Settings
from photosieve.store import accounts, registry
from photosieve.store.db import make_engine, make_sessionmaker
from photosieve.store.images import FolderStore
from photosieve.store.models import ModelStatus
from service_harness import PASSWORD, drawn_photo, password_hash

pytestmark = pytest.mark.slow
TARGET = ["--target-recall", "0.8", "--confidence", "0.8"]
RETRAIN = RetrainConfig(
    train=TrainConfig(hidden=(32,), epochs=40, patience=10, ensemble=1, lr=1e-3, target_recall=0.8),
    certify=CertifyConfig(target_recall=0.8, confidence=0.8),
    fractions={Split.TRAIN: 0.5, Split.VALIDATION: 0.2, Split.CALIBRATION: 0.3},
)


@pytest.fixture
def workdir(
    tmp_path: Path,
    db_url: str,
    tiny_bundle: ModelBundle,
    embedder: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Path]:
    """A workdir with earlier training data (ingested drawn photos) and the tiny bundle as the
    configured model, approving the lower half of circle scores; the CLI sees the same DB."""
    base = ingest(labelled_folder(tmp_path / "base", offensive=34, ok=34)).accepted
    write_manifest(base, tmp_path / "base.csv", columns=INGESTED_COLUMNS)
    circles = [drawn_photo(20_000 + i, shape="circle") for i in range(8)]
    scores = [Scorer(tiny_bundle, embedder).score_bytes(p).score for p in circles]
    live = tiny_bundle.with_policy(DecisionPolicy(approve_below=float(np.median(scores))))
    live.save(tmp_path / "bundle")
    for name, value in {
        "WORKDIR": str(tmp_path),
        "DATABASE_URL": db_url,
        "AUDIT_RATE": "1.0",
        "MODEL_CHECK_SECONDS": "0",
    }.items():
        monkeypatch.setenv(f"PHOTOSIEVE_{name}", value)
    yield tmp_path


def _worker() -> Any:
    """One service worker as `photosieve serve` builds it (the live model from the registry)."""
    return create_app(Settings(environment="test", secret_key=secrets.token_urlsafe(32)))


def _cli(*args: str) -> Any:
    return CliRunner().invoke(cli_app, list(args))


def _upload(client: httpx.Client, key: str, seed: int, shape: str) -> dict[str, Any]:
    response = client.post(
        "/v1/uploads",
        headers={"Authorization": f"Bearer {key}"},
        files={"image": (f"{seed}.jpg", drawn_photo(seed, shape=shape), "image/jpeg")},
        data={"user_id": f"user-{seed}"},
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def _review_everything(client: httpx.Client, shapes: dict[str, str]) -> int:
    """A reviewer signs in over HTTP and labels every queued item by the photo's shape."""
    login = client.post("/v1/auth/login", json={"username": "rita", "password": PASSWORD})
    assert login.status_code == 200, login.text
    client.headers["X-CSRF-Token"] = login.json()["csrf_token"]
    items = client.post("/v1/review/claim", json={"limit": 50}).json()["items"]
    for item in items:
        label = "offensive" if shapes[item["upload_id"]] == "rectangle" else "ok"
        decided = client.post(f"/v1/review/items/{item['id']}/decision", json={"label": label})
        assert decided.status_code == 200, decided.text
    return len(items)


def test_retrain_shadow_gate_promote_rollback(
    workdir: Path, embedder: Any, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = _worker(), _worker()  # two workers, one database
    with first.state.sessions() as session:
        _, key = accounts.create_api_key(session, "forum")
        accounts.add_user(session, "rita", password_hash(), "reviewer")
        session.commit()
        old = registry.with_status(session, ModelStatus.LIVE)
    assert old is not None and old.promoted_by == "startup"  # a fresh install registers it
    assert (Workdir(workdir).models / old.version / "bundle.json").is_file()

    with LiveServer(first) as server, httpx.Client(base_url=server.url) as api:
        shapes: dict[str, str] = {}
        for i in range(12):
            shape = "rectangle" if i % 2 else "circle"
            shapes[_upload(api, key, 20_000 + i, shape)["id"]] = shape
        checked = _upload(api, key, 20_100, "circle")
        assert checked["model_version"] == old.version
        shapes[checked["id"]] = "circle"
        with httpx.Client(base_url=server.url) as reviewer:
            assert _review_everything(reviewer, shapes) >= 6  # review band + audits

        with first.state.sessions() as session:
            out = retrain(
                session,
                FolderStore(workdir / "service" / "images"),
                Workdir(workdir),
                RETRAIN,
                actor="test",
                base_manifest=workdir / "base.csv",
                embedder=embedder,
            )
        assert out.parent_version == old.version and out.feedback.rows >= 6
        split = pd.read_csv(out.manifest_path)
        selected = split[split["source"] == "external:selected"]  # the review band's photos
        assert len(selected) and set(selected["split"]) <= {"train", "train_dev"}
        assert out.feedback.by_kind.get("audit", 0) > 0
        new = out.version
        assert _cli("model", "shadow", new).exit_code == 0
        shadowed = [_upload(api, key, 20_200 + i, "rectangle") for i in range(3)]
        assert {u["model_version"] for u in shadowed} == {old.version}  # shadow never acts
        with first.state.sessions() as session:
            assert set(registry.shadow_scores(session, new)) == {u["id"] for u in shadowed}

        refused = _cli("model", "promote", new, "--target-recall", "0.999")
        assert refused.exit_code == 2 and "cannot_certify" in refused.output
        promoted = _cli("model", "promote", new, *TARGET)
        assert promoted.exit_code == 0, promoted.output
        assert _upload(api, key, 20_300, "circle")["model_version"] == new
        assert api.get("/healthz").json()["model_version"] == new
        with caplog.at_level(logging.WARNING):
            third = _worker()  # a worker started now serves the registry's live model
        assert third.state.model_version == new and "not the configured bundle" in caplog.text
        third.state.engine.dispose()
        with TestClient(second) as other:  # the second worker, same database
            other.headers["Authorization"] = f"Bearer {key}"
            photo = drawn_photo(20_400, shape="circle")
            got = other.post(
                "/v1/uploads",
                files={"image": ("x.jpg", photo, "image/jpeg")},
                data={"user_id": "u"},
            )
            assert got.json()["model_version"] == new  # switched without a restart

            # A candidate that reviews more than the live model is refused; an override is
            # possible and audited.
            worse = _worse_copy(Path(out.bundle_path), out.manifest_path, workdir, new)
            refused = _cli("model", "promote", worse, *TARGET)
            assert refused.exit_code == 2 and "worse_review_rate" in refused.output
            assert _cli("model", "promote", worse, "--override", *TARGET).exit_code == 1
            forced = _cli("model", "promote", worse, "--override", "--reason", "drill", *TARGET)
            assert forced.exit_code == 0, forced.output
            with first.state.sessions() as session:
                (event, *_) = registry.events(session)
            assert (event.kind, event.version, event.override, event.reason) == (
                "promoted",
                worse,
                True,
                "drill",
            )

            # Rollback: one command back to the previous live version, then to the first one.
            assert _cli("model", "rollback").exit_code == 0
            assert _upload(api, key, 20_500, "circle")["model_version"] == new
            back = _cli("model", "rollback", old.version)
            assert back.exit_code == 0, back.output
            assert _upload(api, key, 20_600, "circle")["model_version"] == old.version
            got = other.post(
                "/v1/uploads",
                files={"image": ("y.jpg", drawn_photo(20_700), "image/jpeg")},
                data={"user_id": "u"},
            )
            assert got.json()["model_version"] == old.version
    listing = _cli("model", "list")
    assert listing.exit_code == 0 and "rolled_back" in listing.output
    first.state.engine.dispose()
    second.state.engine.dispose()


def _worse_copy(bundle_path: Path, manifest: Path, root: Path, parent: str) -> str:
    """The candidate with an approve threshold of 0 (reviews every photo), registered."""
    bundle = ModelBundle.load(bundle_path)
    assert bundle.policy is not None
    worse = bundle.with_policy(
        dataclasses.replace(bundle.policy, approve_below=0.0, remove_at=None)
    )
    path = worse.save(Workdir(root).models / "worse")
    settings = Settings()
    engine = make_engine(settings.resolved_database_url)
    try:
        with make_sessionmaker(engine)() as session:
            registry.register(
                session,
                registry.NewModel(
                    version=worse.version,
                    bundle_path=str(path),
                    parent_version=parent,
                    manifest_path=str(manifest),
                ),
                actor="test",
            )
            session.commit()
    finally:
        engine.dispose()
    return worse.version
