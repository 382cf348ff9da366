"""Review queue API: claims, decisions, undo, history, roles; on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select, update

from photosieve.store.models import KnownBadHash, ReviewItem
from service_harness import REVIEW_ALL, Service, build_service, drawn_photo, sign_in


def _queue(service: Service, n: int, start: int = 100) -> list[str]:
    service.set_policy(REVIEW_ALL)
    api = service.api()
    return [service.upload(api, drawn_photo(start + i)).json()["id"] for i in range(n)]


def test_claims_are_oldest_first_disjoint_and_sticky(service: Service) -> None:
    ids = _queue(service, 5)
    rita, sam = service.reviewer("rita"), service.reviewer("sam")
    first = rita.post("/v1/review/claim", json={"limit": 2}).json()
    assert [i["upload_id"] for i in first["items"]] == ids[:2]
    assert first["queue_depth"] == 5
    assert all(i["kind"] == "model_band" and i["image_url"] for i in first["items"])
    second = sam.post("/v1/review/claim", json={"limit": 2}).json()
    assert [i["upload_id"] for i in second["items"]] == ids[2:4]
    again = rita.post("/v1/review/claim", json={"limit": 3}).json()  # own claims come back
    assert [i["upload_id"] for i in again["items"]] == [*ids[:2], ids[4]]
    assert sam.post("/v1/review/claim", json={"limit": 3}).json()["items"][2:] == []


def test_abandoned_claims_expire(service: Service) -> None:
    _queue(service, 2)
    rita, sam = service.reviewer("rita"), service.reviewer("sam")
    held = rita.post("/v1/review/claim", json={"limit": 2}).json()["items"]
    assert sam.post("/v1/review/claim", json={"limit": 2}).json()["items"] == []
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    with service.sessions() as session:
        session.execute(update(ReviewItem).values(claim_expires_at=past))
        session.commit()
    taken = sam.post("/v1/review/claim", json={"limit": 2}).json()["items"]
    assert [i["id"] for i in taken] == [i["id"] for i in held]
    late = rita.post(f"/v1/review/items/{held[0]['id']}/decision", json={"label": "ok"})
    assert late.status_code == 409 and late.json()["detail"]["reason"] == "not_claimed"


def test_decision_rules(service: Service) -> None:
    (upload_id,) = _queue(service, 1)
    rita, sam = service.reviewer("rita"), service.reviewer("sam")
    with service.sessions() as session:
        item_id = session.scalar(select(ReviewItem.id))
    unclaimed = rita.post(f"/v1/review/items/{item_id}/decision", json={"label": "ok"})
    assert unclaimed.status_code == 409
    rita.post("/v1/review/claim", json={"limit": 1})
    other = sam.post(f"/v1/review/items/{item_id}/decision", json={"label": "ok"})
    assert other.status_code == 409
    bad_label = rita.post(f"/v1/review/items/{item_id}/decision", json={"label": "maybe"})
    assert bad_label.status_code == 422
    assert rita.post("/v1/review/items/999999/decision", json={"label": "ok"}).status_code == 404
    done = rita.post(f"/v1/review/items/{item_id}/decision", json={"label": "offensive"})
    assert done.status_code == 200
    body = done.json()
    assert body["label"] == "offensive" and body["reviewer"] == "rita"
    assert body["upload_status"] == "removed" and body["undone"] is False
    twice = rita.post(f"/v1/review/items/{item_id}/decision", json={"label": "ok"})
    assert twice.status_code == 409
    status = service.api().get(f"/v1/uploads/{upload_id}").json()
    assert (status["decision"], status["final"]) == ("removed", True)
    with service.sessions() as session:
        (entry,) = session.scalars(select(KnownBadHash)).all()
        assert entry.confirmed and entry.source_upload_id == upload_id


def test_undo_restores_everything_within_the_window(service: Service) -> None:
    (upload_id,) = _queue(service, 1)
    rita, sam = service.reviewer("rita"), service.reviewer("sam")
    (item,) = rita.post("/v1/review/claim", json={"limit": 1}).json()["items"]
    decision = rita.post(f"/v1/review/items/{item['id']}/decision", json={"label": "offensive"})
    decision_id = decision.json()["id"]
    assert sam.post(f"/v1/review/decisions/{decision_id}/undo").status_code == 404
    undone = rita.post(f"/v1/review/decisions/{decision_id}/undo")
    assert undone.status_code == 200 and undone.json()["undone"] is True
    status = service.api().get(f"/v1/uploads/{upload_id}").json()
    assert (status["decision"], status["final"]) == ("pending_review", False)
    with service.sessions() as session:
        assert session.scalars(select(KnownBadHash)).all() == []
    again = rita.post(f"/v1/review/decisions/{decision_id}/undo")
    assert again.status_code == 409 and again.json()["detail"]["reason"] == "already_undone"
    # The item is rita's again: she can decide it at once, differently.
    redo = rita.post(f"/v1/review/items/{item['id']}/decision", json={"label": "ok"})
    assert redo.status_code == 200 and redo.json()["upload_status"] == "approved"
    history = rita.get("/v1/review/history").json()["items"]
    assert [(h["label"], h["undone"]) for h in history] == [("ok", False), ("offensive", True)]
    stats_for_reviewer = rita.get("/v1/admin/stats")
    assert stats_for_reviewer.status_code == 403


def test_undo_window_closes(tmp_path, db_url, tiny_bundle, embedder) -> None:  # type: ignore[no-untyped-def]
    service = build_service(tmp_path, db_url, tiny_bundle, embedder, undo_window_seconds=0)
    try:
        _queue(service, 1)
        rita = service.reviewer("rita")
        (item,) = rita.post("/v1/review/claim", json={"limit": 1}).json()["items"]
        decided = rita.post(f"/v1/review/items/{item['id']}/decision", json={"label": "ok"})
        late = rita.post(f"/v1/review/decisions/{decided.json()['id']}/undo")
        assert late.status_code == 409 and late.json()["detail"]["reason"] == "undo_expired"
    finally:
        service.app.state.engine.dispose()


def test_history_and_admin_views(service: Service) -> None:
    _queue(service, 3)
    rita, ada = service.reviewer("rita"), service.reviewer("ada", role="admin")
    for client in (rita, ada):
        (item,) = client.post("/v1/review/claim", json={"limit": 1}).json()["items"]
        client.post(f"/v1/review/items/{item['id']}/decision", json={"label": "ok"})
    assert [h["reviewer"] for h in rita.get("/v1/review/history").json()["items"]] == ["rita"]
    everyone = ada.get("/v1/review/history", params={"everyone": True}).json()["items"]
    assert [h["reviewer"] for h in everyone] == ["ada", "rita"]
    assert rita.get("/v1/review/history", params={"everyone": True}).status_code == 403
    stats = ada.get("/v1/admin/stats").json()
    assert stats["queue_total"] == 1 and stats["queue_depth"]["model_band"] == 1
    assert stats["decisions_today"] == {"offensive": 0, "ok": 2}
    assert stats["reviewers_active_today"] == 2


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/v1/review/claim"),
        ("post", "/v1/review/items/1/decision"),
        ("post", "/v1/review/decisions/1/undo"),
        ("get", "/v1/review/history"),
        ("get", "/v1/admin/stats"),
        ("get", "/v1/auth/me"),
    ],
)
def test_no_anonymous_review_access(service: Service, method: str, path: str) -> None:
    response = getattr(service.client(), method)(path, **({"json": {}} if method == "post" else {}))
    assert response.status_code == 401
    assert response.json()["detail"]["reason"] == "unauthorized"


def test_sign_in_csrf_and_sign_out(service: Service) -> None:
    service.add_user("rita")
    client = service.client()
    wrong = client.post("/v1/auth/login", json={"username": "rita", "password": "nope-nope"})
    assert wrong.status_code == 401
    ghost = client.post("/v1/auth/login", json={"username": "ghost", "password": "nope-nope"})
    assert ghost.status_code == 401
    sign_in(client, "rita")
    assert client.get("/v1/auth/me").json()["username"] == "rita"
    token = client.headers.pop("X-CSRF-Token")
    forged = client.post("/v1/review/claim", json={"limit": 1})
    assert forged.status_code == 403 and forged.json()["detail"]["reason"] == "csrf"
    client.headers["X-CSRF-Token"] = token
    assert client.post("/v1/review/claim", json={"limit": 1}).status_code == 200
    assert client.post("/v1/auth/logout").status_code == 204
    assert client.get("/v1/auth/me").status_code == 401
