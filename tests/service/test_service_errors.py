"""Every error the service answers has one JSON shape, the router's own 404/405 included."""

from __future__ import annotations

from service_harness import Service


def test_router_errors_have_the_uniform_shape(service: Service) -> None:
    client = service.client()
    missing = client.get("/v1/no-such-route")
    assert missing.status_code == 404
    assert missing.json() == {"detail": {"reason": "not_found", "message": "Not Found"}}
    wrong = client.delete("/v1/uploads")
    assert wrong.status_code == 405 and wrong.headers["allow"]
    assert wrong.json()["detail"]["reason"] == "method_not_allowed"
    own = client.get("/v1/uploads/abc")  # the service's own errors keep their reasons
    assert own.status_code == 401 and own.json()["detail"]["reason"] == "unauthorized"
