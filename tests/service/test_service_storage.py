"""The service with its photos in S3 (moto server, real boto3): upload, review, export, readiness,
and an outage that loses nothing. SQLite is enough here: the store is what varies."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pandas as pd
import pytest
from sqlalchemy import func, select

from photosieve.bundle import ModelBundle
from photosieve.feedback.export import export_labels
from photosieve.service.config import Settings
from photosieve.service.startup import StartupError, preflight
from photosieve.store.models import Upload
from photosieve.store.s3 import S3Store
from s3_server import S3_REGION
from service_harness import REVIEW_ALL, Service, build_service, drawn_photo


@pytest.fixture
def s3_service(
    tmp_path: Path, s3_bucket: str, s3_endpoint: str, tiny_bundle: ModelBundle, embedder: Any
) -> Iterator[Service]:
    svc = build_service(
        tmp_path,
        f"sqlite:///{tmp_path / 'service.db'}",
        tiny_bundle,
        embedder,
        storage_url=f"s3://{s3_bucket}/avatars",
        s3_endpoint_url=s3_endpoint,
        s3_region=S3_REGION,
    )
    yield svc
    svc.close()


def _bucket_keys(bucket: str, endpoint: str) -> list[str]:
    client = boto3.client("s3", endpoint_url=endpoint, region_name=S3_REGION)
    return [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]


def test_upload_review_and_export_with_photos_in_s3(
    s3_service: Service, s3_bucket: str, s3_endpoint: str, tmp_path: Path
) -> None:
    service = s3_service
    assert isinstance(service.app.state.images, S3Store)
    service.set_policy(REVIEW_ALL)
    photos = [drawn_photo(400 + i) for i in range(2)]
    ids = [
        service.upload(service.api(), data, f"user{i}").json()["id"]
        for i, data in enumerate(photos)
    ]
    shas = sorted(hashlib.sha256(data).hexdigest() for data in photos)
    assert _bucket_keys(s3_bucket, s3_endpoint) == [f"avatars/{s[:2]}/{s[2:4]}/{s}" for s in shas]
    assert not (tmp_path / "images").exists()  # nothing kept on the replica's disk

    rita = service.reviewer("rita")
    items = rita.post("/v1/review/claim", json={"limit": 2}).json()["items"]
    assert sorted(item["upload_id"] for item in items) == sorted(ids)
    for item in items:
        image = rita.get(f"/v1/uploads/{item['upload_id']}/image")  # served through the service
        assert image.status_code == 200 and image.content == photos[ids.index(item["upload_id"])]
        decided = rita.post(f"/v1/review/items/{item['id']}/decision", json={"label": "ok"})
        assert decided.status_code == 200, decided.text
    assert service.client().get(f"/v1/uploads/{ids[0]}/image").status_code == 401  # signed in only

    out = tmp_path / "feedback" / "labels.csv"
    with service.sessions() as session:
        summary = export_labels(session, service.app.state.images, out)
    frame = pd.read_csv(out)
    assert summary.rows == 2 and summary.missing_files == 0
    assert sorted(Path(p).read_bytes() for p in frame["path"]) == sorted(photos)

    ready = service.client().get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["image_store"]["ok"] is True
    assert len(_bucket_keys(s3_bucket, s3_endpoint)) == 2  # the probe object is gone


def test_an_s3_outage_is_not_ready_and_loses_nothing(
    s3_service: Service, s3_bucket: str, s3_endpoint: str
) -> None:
    service = s3_service
    service.set_policy(REVIEW_ALL)
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name=S3_REGION)
    client.delete_bucket(Bucket=s3_bucket)  # the bucket is gone (or the credentials revoked)

    ready = service.client().get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["image_store"] == {
        "ok": False,
        "detail": "not writable: NoSuchBucket",
    }
    upload = service.upload(service.api(), drawn_photo(410))
    assert upload.status_code == 503, upload.text
    assert upload.json()["detail"]["reason"] == "storage_unavailable"
    with service.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Upload)) == 0  # no row either


def test_startup_refuses_an_unreachable_bucket(s3_bucket: str, tmp_path: Path) -> None:
    settings = Settings(
        environment="test",
        workdir=tmp_path,
        storage_url=f"s3://{s3_bucket}/x",
        s3_endpoint_url="http://127.0.0.1:9",  # nothing listens there
        s3_region=S3_REGION,
    )
    with pytest.raises(StartupError, match=rf"cannot write to the image store s3://{s3_bucket}/x"):
        preflight(settings)


def test_storage_url_must_name_a_bucket(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="PHOTOSIEVE_STORAGE_URL must be s3://bucket/prefix"):
        Settings(workdir=tmp_path, storage_url="/srv/photos")
    assert Settings(workdir=tmp_path).storage_url is None  # the folder is the default
