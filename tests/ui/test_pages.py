"""Reviewer pages without a browser: sign-in, redirects, roles, CSRF, static files, history."""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from photosieve.service.routes.ui import audit_rows
from service_harness import PASSWORD, upload_photos


def _client(app: FastAPI) -> TestClient:
    return TestClient(app, raise_server_exceptions=True, follow_redirects=False)


def _form_token(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token in the form"
    return match.group(1)


def sign_in(client: TestClient, username: str, next_url: str = "/review") -> str:
    """Sign in through the form; returns the page's CSRF token for API calls."""
    token = _form_token(client.get("/login").text)
    response = client.post(
        "/login",
        data={"username": username, "password": PASSWORD, "csrf_token": token, "next": next_url},
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == next_url
    page = client.get("/review").text
    match = re.search(r'<meta name="csrf-token" content="([^"]+)"', page)
    assert match
    return match.group(1)


@pytest.mark.parametrize("path", ["/review", "/history", "/admin", "/"])
def test_anonymous_visitors_are_sent_to_sign_in(ui_app: tuple[FastAPI, str], path: str) -> None:
    client = _client(ui_app[0])
    response = client.get(path)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login")


def test_sign_in_rejects_bad_password_and_missing_csrf(ui_app: tuple[FastAPI, str]) -> None:
    client = _client(ui_app[0])
    page = client.get("/login")
    assert page.status_code == 200
    assert "default-src 'self'" in page.headers["content-security-policy"]
    token = _form_token(page.text)
    wrong = client.post(
        "/login", data={"username": "rita", "password": "nope", "csrf_token": token}
    )
    assert wrong.status_code == 401
    assert "Wrong username or password" in wrong.text
    forged = client.post("/login", data={"username": "rita", "password": PASSWORD})
    assert forged.status_code == 403
    assert client.get("/review").status_code == 303  # still signed out


def test_sign_in_never_redirects_off_site(ui_app: tuple[FastAPI, str]) -> None:
    client = _client(ui_app[0])
    token = _form_token(client.get("/login").text)
    response = client.post(
        "/login",
        data={
            "username": "rita",
            "password": PASSWORD,
            "csrf_token": token,
            "next": "//evil.example",
        },
    )
    assert response.headers["location"] == "/review"


def test_queue_page_and_roles(ui_app: tuple[FastAPI, str]) -> None:
    client = _client(ui_app[0])
    sign_in(client, "rita")
    page = client.get("/review")
    assert page.status_code == 200
    assert "<kbd>O</kbd>" in page.text and "Undo your last decision" in page.text
    assert 'data-undo-seconds="60"' in page.text
    assert client.get("/admin").status_code == 403  # reviewers do not see the admin page
    assert client.get("/history?everyone=1").status_code == 200  # ignored for reviewers
    logout_token = _form_token(client.get("/review").text)
    assert client.post("/logout", data={"csrf_token": logout_token}).status_code == 303
    assert client.get("/review").status_code == 303


def test_static_files_are_a_fixed_set(ui_app: tuple[FastAPI, str]) -> None:
    client = _client(ui_app[0])
    script = client.get("/static/review.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert client.get("/static/ui.css").headers["content-type"].startswith("text/css")
    for bad in ["/static/nothing.js", "/static/..%2Fui.py", "/static/.hidden.js", "/static/x.py"]:
        assert client.get(bad).status_code == 404, bad


def test_decisions_through_the_api_show_in_history_and_admin(ui_app: tuple[FastAPI, str]) -> None:
    app, api_key = ui_app
    client = _client(app)
    ids = upload_photos(client, api_key)
    token = sign_in(client, "rita")
    items = client.post("/v1/review/claim", json={"limit": 12}, headers={"X-CSRF-Token": token})
    assert items.status_code == 200, items.text
    claimed = items.json()["items"]
    assert [i["upload_id"] for i in claimed] == ids
    no_csrf = client.post(f"/v1/review/items/{claimed[0]['id']}/decision", json={"label": "ok"})
    assert no_csrf.status_code == 403  # the page's script always sends X-CSRF-Token
    for item, label in zip(claimed, ["offensive", "ok", "ok"], strict=True):
        response = client.post(
            f"/v1/review/items/{item['id']}/decision",
            json={"label": label},
            headers={"X-CSRF-Token": token},
        )
        assert response.status_code == 200, response.text
    history = client.get("/history").text
    assert history.count('class="label label-offensive"') == 1
    assert history.count('class="label label-ok"') == 2
    assert all(f"/v1/uploads/{u}/image" in history for u in ids)

    admin = _client(app)
    sign_in(admin, "ada")
    page = admin.get("/admin")
    assert page.status_code == 200
    assert "<title>Admin · photosieve</title>" in page.text
    assert 'class="page-admin"' in page.text
    # Every panel once, inside the page's content (a template that pasted its panels into the
    # title block rendered them three times).
    for panel in ("models-h", "drift-h", "team-h", "webhooks-h", "audit-h"):
        assert page.text.count(f'id="{panel}"') == 1, panel
    assert page.text.index('id="drift-h"') > page.text.index("</head>")
    assert re.search(r'id="queue-total">0<', page.text)
    decisions = page.text.split('id="decisions-today"')[1].split("</table>")[0]
    assert re.search(r"Offensive</span></th>\s*<td class=\"num\">1<", decisions)
    assert re.search(r"OK</span></th>\s*<td class=\"num\">2<", decisions)
    everyone = admin.get("/history?everyone=1").text
    assert everyone.count("<td>rita</td>") == 3


def test_audit_rows_show_the_production_certificate() -> None:
    assert audit_rows({"audits_decided": 0, "audits_offensive": 0}, None) == []
    recall = {"confidence": 0.95, "photos": 1200, "caught": 40, "misses_upper_bound": 3,
              "recall_lower_bound": 40 / 43, "anytime_recall_lower_bound": 0.9}  # fmt: skip
    rows = dict(audit_rows({"audits_decided": 12, "audits_offensive": 1}, recall))
    assert rows["Audits decided (all time)"] == "12" and rows["Found offensive"] == "1"
    assert rows["Offensive missed, 95% upper bound"] == "3"
    assert rows["Recall, 95% lower bound"] == "93.0%"
    assert rows["Recall, 95% lower bound valid at every look"] == "90.0%"
    # Audits without evidence for the live model yet: the counts alone.
    assert len(audit_rows({"audits_decided": 3, "audits_offensive": 0}, None)) == 2
