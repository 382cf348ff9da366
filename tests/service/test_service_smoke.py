"""Smoke: the app starts, migrates, answers health and scores a real upload."""

from __future__ import annotations

from service_harness import APPROVE_ALL, Service, drawn_photo


def test_upload_approved_and_health(service: Service) -> None:
    service.set_policy(APPROVE_ALL)
    api = service.api()
    response = service.upload(api, drawn_photo(1))
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["decision"] == "approved"
    assert 0.0 <= body["score"] <= 1.0
    assert api.get("/healthz").json()["status"] == "ok"
