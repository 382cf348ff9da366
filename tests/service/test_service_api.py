"""Upload API, appeals, known-bad bank and audits, on SQLite and PostgreSQL (same suite)."""

from __future__ import annotations

import io

from PIL import Image
from sqlalchemy import func, select

from photosieve.store.models import KnownBadHash, ReviewItem, Upload
from service_harness import APPROVE_ALL, REMOVE_ALL, REVIEW_ALL, Service, drawn_photo


def _recompressed(data: bytes, quality: int = 70) -> bytes:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(data)).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def _count(service: Service, model: type) -> int:
    with service.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_approved_upload_is_stored_content_addressed(service: Service) -> None:
    service.set_policy(APPROVE_ALL)
    api = service.api()
    data = drawn_photo(1)
    response = service.upload(api, data, "forum-user-7")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["decision"] == "approved" and body["reason"] == "model_band"
    assert body["user_id"] == "forum-user-7" and body["queued_as"] is None
    assert body["model_version"].startswith("tiny-")
    assert len(body["id"]) >= 20  # random, unguessable
    assert response.headers["location"] == f"/v1/uploads/{body['id']}"
    images = service.app.state.images
    assert [p.name for p in images.files()] == [__import__("hashlib").sha256(data).hexdigest()]
    assert images.staged() == []
    status = api.get(f"/v1/uploads/{body['id']}").json()
    assert status["decision"] == "approved" and status["final"] is False
    assert _count(service, ReviewItem) == 0


def test_review_band_is_queued_and_photo_is_for_reviewers_only(service: Service) -> None:
    service.set_policy(REVIEW_ALL)
    api = service.api()
    data = drawn_photo(2)
    body = service.upload(api, data).json()
    assert body["decision"] == "pending_review" and body["queued_as"] == "model_band"
    assert api.get(body["id"] and f"/v1/uploads/{body['id']}/image").status_code == 401
    assert service.client().get(f"/v1/uploads/{body['id']}/image").status_code == 401
    assert service.client().get(f"/v1/uploads/{body['id']}").status_code == 401
    reviewer = service.reviewer("rita")
    image = reviewer.get(f"/v1/uploads/{body['id']}/image")
    assert image.status_code == 200 and image.content == data
    assert image.headers["content-type"] == "image/jpeg"
    assert "no-store" in image.headers["cache-control"]
    assert reviewer.get(f"/v1/uploads/{body['id']}").json()["decision"] == "pending_review"
    assert reviewer.get("/v1/uploads/not-a-real-id/image").status_code == 404


def test_removal_appeal_and_final_decision(service: Service) -> None:
    service.set_policy(REMOVE_ALL)
    api = service.api()
    upload = service.upload(api, drawn_photo(3)).json()
    assert upload["decision"] == "removed" and upload["queued_as"] is None
    assert _count(service, KnownBadHash) == 1  # every removal is banked
    appeal = api.post(f"/v1/uploads/{upload['id']}/appeal")
    assert appeal.status_code == 200 and appeal.json()["appealed"] is True
    assert api.post(f"/v1/uploads/{upload['id']}/appeal").status_code == 200  # idempotent
    assert _count(service, ReviewItem) == 1
    reviewer = service.reviewer("rita")
    items = reviewer.post("/v1/review/claim", json={"limit": 5}).json()["items"]
    assert [(i["kind"], i["upload_id"]) for i in items] == [("appeal", upload["id"])]
    decided = reviewer.post(f"/v1/review/items/{items[0]['id']}/decision", json={"label": "ok"})
    assert decided.status_code == 200 and decided.json()["upload_status"] == "approved"
    status = api.get(f"/v1/uploads/{upload['id']}").json()
    assert (status["decision"], status["reason"], status["final"]) == ("approved", "reviewer", True)
    again = api.post(f"/v1/uploads/{upload['id']}/appeal")
    assert again.status_code == 409 and again.json()["detail"]["reason"] == "not_removed"
    with service.sessions() as session:  # the person's "ok" switched the bank entry off
        assert session.scalar(select(KnownBadHash.active)) is False


def test_appeal_errors(service: Service) -> None:
    service.set_policy(APPROVE_ALL)
    api = service.api()
    upload = service.upload(api, drawn_photo(4)).json()
    response = api.post(f"/v1/uploads/{upload['id']}/appeal")
    assert response.status_code == 409 and response.json()["detail"]["reason"] == "not_removed"
    assert api.post("/v1/uploads/nope/appeal").status_code == 404
    assert service.client().post(f"/v1/uploads/{upload['id']}/appeal").status_code == 401


def test_known_bad_near_match_is_removed_at_once(service: Service) -> None:
    service.set_policy(REMOVE_ALL)
    api = service.api()
    original = drawn_photo(5)
    first = service.upload(api, original).json()
    service.set_policy(APPROVE_ALL)  # the model would now approve it...
    again = service.upload(api, _recompressed(original), "other-user").json()
    assert again["decision"] == "removed" and again["reason"] == "hash_match"  # ...the bank won't
    assert again["hash_match"]["upload_id"] == first["id"]
    assert again["hash_match"]["hash"] == "pdq"  # the drawn photo's PDQ quality is high enough
    assert again["hash_match"]["distance"] <= service.settings.pdq_match_distance
    assert again["queued_as"] == "hash_match"  # model-only removal: a person confirms
    unrelated = service.upload(api, drawn_photo(6)).json()
    assert unrelated["decision"] == "approved"
    # A person confirms the match: later copies are removed with nothing queued.
    reviewer = service.reviewer("rita")
    (item,) = reviewer.post("/v1/review/claim", json={"limit": 5}).json()["items"]
    assert item["kind"] == "hash_match" and item["match_distance"] is not None
    assert item["match_hash"] == "pdq"
    reviewer.post(f"/v1/review/items/{item['id']}/decision", json={"label": "offensive"})
    third = service.upload(api, _recompressed(original, 50)).json()
    assert third["decision"] == "removed" and third["queued_as"] is None


def test_ok_on_hash_match_clears_the_unconfirmed_source(service: Service) -> None:
    service.set_policy(REMOVE_ALL)
    api = service.api()
    original = drawn_photo(7)
    service.upload(api, original)
    service.set_policy(APPROVE_ALL)
    assert service.upload(api, _recompressed(original)).json()["reason"] == "hash_match"
    reviewer = service.reviewer("rita")
    (item,) = reviewer.post("/v1/review/claim", json={"limit": 5}).json()["items"]
    reviewer.post(f"/v1/review/items/{item['id']}/decision", json={"label": "ok"})
    later = service.upload(api, _recompressed(original, 60)).json()
    assert later["decision"] == "approved"


def test_audit_sampling_queues_approved_uploads(service: Service) -> None:
    service.set_policy(APPROVE_ALL)
    service.settings.audit_rate = 1.0
    api = service.api()
    upload = service.upload(api, drawn_photo(8)).json()
    assert upload["decision"] == "approved" and upload["queued_as"] == "audit"
    admin = service.reviewer("ada", role="admin")
    (item,) = admin.post("/v1/review/claim", json={"limit": 5}).json()["items"]
    assert item["kind"] == "audit" and item["upload_status"] == "approved"
    admin.post(f"/v1/review/items/{item['id']}/decision", json={"label": "offensive"})
    status = api.get(f"/v1/uploads/{upload['id']}").json()
    assert status["decision"] == "removed" and status["final"] is True
    stats = admin.get("/v1/admin/stats").json()
    assert stats["audits_decided"] == 1 and stats["audits_offensive"] == 1
    assert stats["uploads_today"]["removed"] == 1
    assert stats["known_bad_hashes"] == 1


def test_zero_audit_rate_queues_nothing(service: Service) -> None:
    service.set_policy(APPROVE_ALL)
    api = service.api()
    for seed in range(3):
        assert service.upload(api, drawn_photo(20 + seed)).json()["queued_as"] is None
    assert _count(service, ReviewItem) == 0


def test_api_key_headers(service: Service) -> None:
    service.set_policy(APPROVE_ALL)
    client = service.client()
    data = drawn_photo(9)
    files = {"image": ("a.jpg", data, "image/jpeg")}
    ok = client.post(
        "/v1/uploads", files=files, data={"user_id": "u"}, headers={"X-API-Key": service.api_key}
    )
    assert ok.status_code == 201
    bad = client.post(
        "/v1/uploads", files=files, data={"user_id": "u"}, headers={"X-API-Key": "psk_wrong"}
    )
    assert bad.status_code == 401 and bad.json()["detail"]["reason"] == "unauthorized"
    assert _count(service, Upload) == 1


def test_metrics_and_health(service: Service) -> None:
    api = service.api()
    service.set_policy(APPROVE_ALL)
    service.upload(api, drawn_photo(10))
    service.set_policy(REVIEW_ALL)
    service.upload(api, drawn_photo(11))
    api.post("/v1/uploads", content=b"x", headers={"Content-Type": "multipart/form-data; b=1"})
    text = service.client().get("/metrics").text
    assert 'photosieve_uploads_total{decision="approved"} 1' in text
    assert 'photosieve_uploads_total{decision="pending_review"} 1' in text
    assert 'photosieve_queue_depth{kind="model_band"} 1' in text
    assert "photosieve_upload_latency_seconds_count 2" in text
    assert 'photosieve_upload_latency_seconds_bucket{le="+Inf"} 2' in text
    health = service.client().get("/healthz").json()
    assert health == {"status": "ok", "model_version": health["model_version"]}  # liveness only


def test_openapi_is_served(service: Service) -> None:
    schema = service.client().get("/openapi.json").json()
    for path in ("/v1/uploads", "/v1/review/claim", "/v1/admin/stats", "/healthz"):
        assert path in schema["paths"]
    body = schema["paths"]["/v1/uploads"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in body
