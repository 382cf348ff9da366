"""Input hygiene (issue 9, findings 7 and 10), on SQLite and PostgreSQL, over real HTTP too.

NUL and other control characters are refused with 422 `control_characters` at the edge (form
fields, path ids, query strings, JSON bodies) instead of a 500 from PostgreSQL or a silently
stored NUL in SQLite; over-long user ids get their own reason; a chunked body cut off at the
size limit is a quiet 413, with no ERROR logged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from live_server import LiveServer
from photosieve.store.models import Upload, User
from service_harness import (
    APPROVE_ALL,
    CHUNKED_CONTENT_TYPE,
    PASSWORD,
    Service,
    drawn_photo,
    oversized_chunked_upload,
)


def _reason(response: Any) -> str:
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, dict) and detail["message"]
    return str(detail["reason"])


def _uploads(service: Service) -> int:
    with service.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Upload)) or 0)


@pytest.mark.parametrize("user_id", ["u\x00", "\x00", "a\x1bb", "tab\there", "line\nbreak", "\x7f"])
def test_control_characters_in_user_id(service: Service, user_id: str) -> None:
    service.set_policy(APPROVE_ALL)
    response = service.upload(service.api(), drawn_photo(1), user_id)
    assert _reason(response) == "control_characters"
    assert _uploads(service) == 0


def test_over_long_user_id_has_its_own_reason(service: Service) -> None:
    service.set_policy(APPROVE_ALL)
    api = service.api()
    assert _reason(service.upload(api, drawn_photo(2), "x" * 200)) == "user_id_too_long"
    assert _reason(service.upload(api, drawn_photo(2), "   ")) == "missing_user_id"
    assert service.upload(api, drawn_photo(2), "x" * 128).status_code == 201


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/uploads/a%00b"),
        ("GET", "/v1/uploads/%00"),
        ("POST", "/v1/uploads/a%00b/appeal"),
        ("GET", "/v1/uploads/a%00b/image"),
        ("GET", "/v1/uploads/a%1Fb"),
        ("GET", "/login?next=%00"),
        ("GET", "/v1/review/history?everyone=%00"),
    ],
)
def test_control_characters_in_paths_and_queries(service: Service, method: str, path: str) -> None:
    for client in (service.api(), service.reviewer("rita"), service.client()):
        assert _reason(client.request(method, path)) == "control_characters"


@pytest.mark.parametrize(
    "body",
    [
        {"username": "ad\x00a", "password": PASSWORD},
        {"username": "ada", "password": "pass\x00word"},
        {"username": "ada\nmin", "password": PASSWORD},
        {"user\x00name": "ada", "password": PASSWORD},
    ],
)
def test_control_characters_in_login_need_no_credentials(service: Service, body: Any) -> None:
    service.add_user("ada")
    response = service.client().post("/v1/auth/login", json=body)
    assert _reason(response) == "control_characters"


def test_control_characters_in_the_sign_in_form(service: Service) -> None:
    response = service.client().post("/login", data={"username": "a\x00", "password": "x"})
    assert _reason(response) == "control_characters"
    # The same form as multipart (not checked by the middleware) is refused, never a 500.
    client = service.client()
    page = client.get("/login")
    token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    fields = {"username": "a\x00", "password": "x", "csrf_token": token}
    multipart = client.post("/login", files={k: (None, v) for k, v in fields.items()})
    assert multipart.status_code == 401, multipart.text


def test_validation_errors_have_the_uniform_shape(service: Service) -> None:
    rita = service.reviewer("rita")
    response = rita.post("/v1/review/items/1/decision", json={"label": "maybe"})
    assert _reason(response) == "invalid_request"
    assert response.json()["detail"]["errors"][0]["loc"] == ["body", "label"]
    json_type = {"Content-Type": "application/json"}
    for body in (b"[" * 100_000, b"{not json", b"\xff\xfe"):
        odd = service.client().post("/v1/auth/login", content=body, headers=json_type)
        assert 400 <= odd.status_code < 500, odd.text


@pytest.fixture
def live(service: Service) -> Iterator[str]:
    with LiveServer(service.app) as server:
        yield server.url


def test_nul_over_real_http(service: Service, live: str) -> None:
    """The reported 500s (PostgreSQL `DataError`) are 422s on both databases."""
    service.set_policy(APPROVE_ALL)
    service.add_user("ada")
    auth = {"Authorization": f"Bearer {service.api_key}"}
    with httpx.Client(base_url=live, timeout=30) as http:
        files = {"image": ("a.jpg", drawn_photo(3), "image/jpeg")}
        upload = http.post("/v1/uploads", files=files, data={"user_id": "u\x00"}, headers=auth)
        assert _reason(upload) == "control_characters"
        assert _reason(http.get("/v1/uploads/abc%00def", headers=auth)) == "control_characters"
        appeal = http.post("/v1/uploads/abc%00def/appeal", headers=auth)
        assert _reason(appeal) == "control_characters"
        login = http.post("/v1/auth/login", json={"username": "\x00", "password": "x"})
        assert _reason(login) == "control_characters"
        good = http.post("/v1/uploads", files=files, data={"user_id": "u"}, headers=auth)
        assert good.status_code == 201
    with service.sessions() as session:
        assert session.scalar(select(func.count()).select_from(User)) == 1
    assert _uploads(service) == 1


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_chunked_body_over_the_limit_is_a_quiet_413(
    service: Service, live: str, caplog: pytest.LogCaptureFixture
) -> None:
    errors = _Errors()
    watched = [logging.getLogger(name) for name in ("uvicorn.error", "uvicorn", "")]
    for logger in watched:
        logger.addHandler(errors)

    try:
        with httpx.Client(base_url=live, timeout=30) as http:
            try:
                response = http.post(
                    "/v1/uploads",
                    content=oversized_chunked_upload(service.settings.max_upload_bytes),
                    headers={
                        "Content-Type": CHUNKED_CONTENT_TYPE,
                        "Authorization": f"Bearer {service.api_key}",
                    },
                )
            except httpx.TransportError:
                response = None  # the server may close before the client finished sending
            if response is not None:
                assert response.status_code == 413
                assert response.json()["detail"]["reason"] == "body_too_large"
            assert http.get("/healthz").status_code == 200  # and it still serves
    finally:
        for logger in watched:
            logger.removeHandler(errors)
    assert errors.records == []
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert _uploads(service) == 0
