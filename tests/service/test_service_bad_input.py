"""Bad uploads get the right 4xx with a JSON reason and leave nothing behind (rows or files)."""

from __future__ import annotations

import io
import os
import time
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import func, select

from photosieve.store.models import KnownBadHash, ReviewItem, Upload
from service_harness import (
    APPROVE_ALL,
    CHUNKED_CONTENT_TYPE,
    Service,
    drawn_photo,
    oversized_chunked_upload,
)


@pytest.fixture(scope="module")
def huge_png() -> bytes:
    """A 50-megapixel PNG (1-bit, so it is small on the wire)."""
    buffer = io.BytesIO()
    Image.new("1", (10_000, 5_000)).save(buffer, "PNG")
    return buffer.getvalue()


def _truncated_jpeg() -> bytes:
    data = drawn_photo(1, size=(320, 240))
    return data[: len(data) * 6 // 10]


def _nothing_written(service: Service) -> None:
    with service.sessions() as session:
        for model in (Upload, ReviewItem, KnownBadHash):
            assert session.scalar(select(func.count()).select_from(model)) == 0, model
    images = service.app.state.images
    assert images.files() == [] and images.staged() == []


def _post(service: Service, data: bytes, *, auth: bool = True) -> Any:
    client = service.api() if auth else service.client()
    return client.post(
        "/v1/uploads", files={"image": ("x.jpg", data, "image/jpeg")}, data={"user_id": "u1"}
    )


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"this is not an image, it is a text file\n" * 10, "not_an_image"),
        (b"", "empty"),
        (_truncated_jpeg(), "truncated"),
        (b"GIF89a" + b"\x00" * 4, "not_an_image"),
    ],
    ids=["text", "zero-bytes", "truncated-jpeg", "broken-gif"],
)
def test_undecodable_uploads(service: Service, payload: bytes, reason: str) -> None:
    response = _post(service, payload)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail["reason"] == reason and detail["message"]
    _nothing_written(service)


def test_fifty_megapixel_png(service: Service, huge_png: bytes) -> None:
    response = _post(service, huge_png)
    assert response.status_code == 422
    assert response.json()["detail"]["reason"] == "too_large"
    _nothing_written(service)


def test_oversized_body_declared(service: Service) -> None:
    too_big = b"\xff" * (service.settings.max_upload_bytes + 200_000)
    response = _post(service, too_big)
    assert response.status_code == 413
    assert response.json()["detail"]["reason"] == "body_too_large"
    _nothing_written(service)


def test_oversized_body_streamed_without_length(service: Service) -> None:

    response = service.api().post(
        "/v1/uploads",
        content=oversized_chunked_upload(service.settings.max_upload_bytes),
        headers={"Content-Type": CHUNKED_CONTENT_TYPE},
    )
    assert response.status_code == 413
    _nothing_written(service)


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", b'{"image": "aGVsbG8=", "user_id": "u1"}'),
        ("image/jpeg", drawn_photo(2)),
        ("text/plain", b"hello"),
    ],
)
def test_wrong_content_type(service: Service, content_type: str, body: bytes) -> None:
    response = service.api().post(
        "/v1/uploads", content=body, headers={"Content-Type": content_type}
    )
    assert response.status_code == 415
    assert response.json()["detail"]["reason"] == "unsupported_media_type"
    _nothing_written(service)


def test_missing_fields(service: Service) -> None:
    api = service.api()
    no_image = api.post("/v1/uploads", files={"other": ("a", b"x")}, data={"user_id": "u1"})
    assert no_image.status_code == 422 and no_image.json()["detail"]["reason"] == "missing_image"
    files = {"image": ("x.jpg", drawn_photo(3), "image/jpeg")}
    no_user = api.post("/v1/uploads", files=files)
    assert no_user.status_code == 422 and no_user.json()["detail"]["reason"] == "missing_user_id"
    _nothing_written(service)


def test_missing_auth(service: Service) -> None:
    response = _post(service, drawn_photo(4), auth=False)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["detail"]["reason"] == "unauthorized"
    _nothing_written(service)


def test_failed_commit_leaves_neither_row_nor_file(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    service.set_policy(APPROVE_ALL)
    moderator = service.app.state.moderator
    original = moderator._record

    def record_then_fail(session: Any, *args: Any) -> Any:
        original(session, *args)  # rows inserted and flushed...
        raise RuntimeError("database went away")  # ...then the transaction fails

    monkeypatch.setattr(moderator, "_record", record_then_fail)
    response = _post(service, drawn_photo(5))
    assert response.status_code == 500
    _nothing_written(service)


def test_failed_publish_leaves_neither_row_nor_file(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    from photosieve.store.images import StagedImage

    service.set_policy(APPROVE_ALL)
    service.settings.audit_rate = 1.0  # a queue item too, to be compensated

    def fail(self: StagedImage) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(StagedImage, "publish", fail)
    response = _post(service, drawn_photo(6))
    assert response.status_code == 500
    _nothing_written(service)


def test_recovery_after_a_crash_between_commit_and_rename(service: Service) -> None:
    """A staged file whose row committed is published at start-up; an orphan is deleted."""
    from photosieve.service.app import create_app

    service.set_policy(APPROVE_ALL)
    data = drawn_photo(7)
    upload_id = _post(service, data).json()["id"]
    images = service.app.state.images
    sha = images.files()[0].name
    images.path_for(sha).rename(images.tmp / f"{sha}.deadbeef.tmp")  # as if the rename never ran
    images.stage(b"orphan bytes", "0" * 64)  # as if the commit never ran
    service.app.state.serving.close()  # as if its process died: it no longer serves the store
    create_app(service.settings, scorer=service.app.state.scorer).state.engine.dispose()
    assert images.staged() == [] and [p.name for p in images.files()] == [sha]
    reviewer = service.reviewer("rita")
    assert reviewer.get(f"/v1/uploads/{upload_id}/image").content == data


def test_a_worker_starting_beside_a_serving_one_leaves_its_uploads_in_flight(
    service: Service,
) -> None:
    """A second process starting on the same store (`--workers 2`, or a restarted worker) must
    not take the first one's staged, not yet committed upload for a crash's leftover; a staged
    file older than any upload takes is still cleaned up."""
    from photosieve.service.app import create_app
    from photosieve.store.images import IN_FLIGHT_SECONDS

    images = service.app.state.images
    in_flight = images.stage(b"an upload between stage and commit", "1" * 64)
    stale = images.stage(b"left by a crash long ago", "2" * 64)
    long_ago = time.time() - IN_FLIGHT_SECONDS - 60
    os.utime(stale.temp_path, (long_ago, long_ago))
    second = create_app(service.settings, scorer=service.app.state.scorer)
    second.state.engine.dispose()
    assert images.staged() == [in_flight.temp_path]
    service.app.state.serving.close()  # both processes gone: the next start recovers it all
    second.state.serving.close()
    create_app(service.settings, scorer=service.app.state.scorer).state.engine.dispose()
    assert images.staged() == []


def test_body_limit_stops_reading_at_the_limit() -> None:
    """The middleware answers 413 and stops pulling chunks once the limit is passed; the
    disconnect the greedy app then sees is expected, so it is not raised as a server error."""
    import asyncio

    from starlette.requests import Request
    from starlette.responses import JSONResponse

    from photosieve.service.limits import BodySizeLimit

    async def app(scope: Any, receive: Any, send: Any) -> None:
        body = await Request(scope, receive).body()  # a greedy app: wants everything
        await JSONResponse({"size": len(body)})(scope, receive, send)

    chunk, total_chunks, pulled = b"x" * 1000, 100, 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": chunk, "more_body": pulled < total_chunks}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/", "headers": [], "query_string": b""}
    asyncio.run(BodySizeLimit(app, max_bytes=5_000)(scope, receive, send))  # no ClientDisconnect
    assert scope["photosieve.body_too_large"] is True
    assert sent[0]["status"] == 413
    assert pulled == 6  # 6 kB read of 100 kB, then it stopped
    assert len([m for m in sent if m["type"] == "http.response.start"]) == 1
