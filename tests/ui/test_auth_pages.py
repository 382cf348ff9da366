"""Reviewer pages and issue 9 "Trust": the sign-out form ends the session on the server, and
the sign-in form is throttled with a readable message."""

from __future__ import annotations

import re

from fastapi import FastAPI
from fastapi.testclient import TestClient
from test_pages import _form_token, sign_in

from service_harness import PASSWORD

COOKIE = "photosieve_session"


def _client(app: FastAPI) -> TestClient:
    return TestClient(app, raise_server_exceptions=True, follow_redirects=False)


def test_sign_out_form_ends_the_session_for_every_copy(ui_app: tuple[FastAPI, str]) -> None:
    app = ui_app[0]
    browser = _client(app)
    sign_in(browser, "rita")
    copy = _client(app)
    copy.cookies.set(COOKIE, browser.cookies[COOKIE], domain="testserver.local")
    assert copy.get("/review").status_code == 200
    token = _form_token(browser.get("/review").text)
    assert browser.post("/logout", data={"csrf_token": token}).status_code == 303
    assert browser.get("/review").status_code == 303
    assert copy.get("/review").status_code == 303  # the copied cookie is dead too
    assert copy.get("/v1/auth/me").status_code == 401


def test_sign_out_needs_the_session_token(ui_app: tuple[FastAPI, str]) -> None:
    browser = _client(ui_app[0])
    sign_in(browser, "rita")
    assert browser.post("/logout", data={"csrf_token": "forged"}).status_code == 303
    assert browser.get("/review").status_code == 200  # a forged form does not sign you out


def test_sign_in_form_is_throttled(ui_app: tuple[FastAPI, str]) -> None:
    client = _client(ui_app[0])
    settings = ui_app[0].state.settings
    for _ in range(settings.login_max_failures):
        token = _form_token(client.get("/login").text)
        wrong = client.post(
            "/login", data={"username": "ada", "password": "nope", "csrf_token": token}
        )
        assert wrong.status_code == 401
    token = _form_token(client.get("/login").text)
    right = client.post(
        "/login", data={"username": "ada", "password": PASSWORD, "csrf_token": token}
    )
    assert right.status_code == 429
    assert int(right.headers["retry-after"]) >= 1
    assert re.search(r"Too many failed sign-ins\. Try again in about \d+ minute", right.text)
    assert client.get("/admin").status_code == 303  # still signed out
