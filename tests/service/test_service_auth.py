"""Issue 9 "Trust": forged cookies, logout, session timeouts and rotation, claims released at
sign-out, admin "sign out everywhere"; on SQLite and PostgreSQL, through a real HTTP server
where the finding was about what a client can do over the wire."""

from __future__ import annotations

import base64
import json

import httpx
import itsdangerous
import pytest
from sqlalchemy import select

from live_server import LiveServer
from photosieve.store.models import AuthEvent, AuthSession, ItemStatus, ReviewItem
from service_harness import PASSWORD, REVIEW_ALL, FakeClock, Service, drawn_photo, sign_in

COOKIE = "photosieve_session"


def forged_cookie(secret: str, payload: dict[str, object]) -> str:
    """A session cookie as Starlette's SessionMiddleware signs it, with `secret`."""
    data = base64.b64encode(json.dumps(payload).encode())
    return itsdangerous.TimestampSigner(secret).sign(data).decode()


def plant(client: httpx.Client, value: str) -> None:
    """Put a session cookie in a TestClient's jar as the server would have set it."""
    client.cookies.set(COOKIE, value, domain="testserver.local")


def _queue(service: Service, n: int, start: int = 300) -> list[str]:
    service.set_policy(REVIEW_ALL)
    api = service.api()
    return [service.upload(api, drawn_photo(start + i)).json()["id"] for i in range(n)]


def test_forged_cookies_are_refused_over_http(service: Service) -> None:
    service.add_user("ada", "admin")  # user id 1, the forged payload's target
    (upload_id,) = _queue(service, 1)
    payloads: list[dict[str, object]] = [
        {"user_id": 1, "csrf_token": "f"},
        {"sid": "guessed-session-id", "csrf_token": "f"},
    ]
    # The old default, other guesses, and even the service's real key: the cookie alone
    # authorises nothing without a live server-side session.
    guesses = ["change-me", "secret", "photosieve", str(service.settings.secret_key)]
    with LiveServer(service.app) as server, httpx.Client(base_url=server.url) as client:
        for secret in guesses:
            for payload in payloads:
                client.cookies.set(COOKIE, forged_cookie(secret, payload))
                headers = {"X-CSRF-Token": "f"}
                assert client.get("/v1/auth/me").status_code == 401
                assert client.get("/v1/admin/stats").status_code == 401
                claim = client.post("/v1/review/claim", json={"limit": 1}, headers=headers)
                assert claim.status_code == 401
                assert client.get(f"/v1/uploads/{upload_id}/image").status_code == 401
                admin = client.get("/admin", follow_redirects=False)
                assert admin.status_code == 303 and admin.headers["location"].startswith("/login")
    with service.sessions() as session:
        assert session.scalars(select(AuthSession)).all() == []


def test_a_copied_cookie_stops_working_at_logout_over_http(service: Service) -> None:
    service.add_user("rita")
    with (
        LiveServer(service.app) as server,
        httpx.Client(base_url=server.url) as browser,
        httpx.Client(base_url=server.url) as thief,
    ):
        sign_in(browser, "rita")
        token = browser.headers["X-CSRF-Token"]
        thief.cookies.set(COOKIE, browser.cookies[COOKIE])
        thief.headers["X-CSRF-Token"] = token
        assert thief.get("/v1/auth/me").json()["username"] == "rita"
        assert browser.post("/v1/auth/logout").status_code == 204
        assert thief.get("/v1/auth/me").status_code == 401
        assert thief.post("/v1/review/claim", json={"limit": 1}).status_code == 401
        page = thief.get("/review", follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"].startswith("/login")
    with service.sessions() as session:
        (row,) = session.scalars(select(AuthSession)).all()
        assert row.revoked_at is not None and row.revoked_reason == "logout"
        kinds = [e.kind for e in session.scalars(select(AuthEvent).order_by(AuthEvent.id))]
        assert kinds == ["login_ok", "logout"]


def test_sessions_end_after_the_idle_timeout(service: Service) -> None:
    clock = FakeClock()
    service.app.state.clock = clock
    client = service.reviewer("rita")
    idle = service.settings.session_idle_seconds
    for _ in range(5):  # activity keeps the session alive well past one idle period
        clock.advance(seconds=idle - 60)
        assert client.get("/v1/auth/me").status_code == 200
    clock.advance(seconds=idle + 1)
    assert client.get("/v1/auth/me").status_code == 401
    clock.advance(seconds=-(idle + 1))  # the server already dropped it: no coming back
    assert client.get("/v1/auth/me").status_code == 401


def test_sessions_end_after_the_absolute_timeout(service: Service) -> None:
    clock = FakeClock()
    service.app.state.clock = clock
    client = service.reviewer("rita")
    lifetime = service.settings.session_max_age_seconds
    step = service.settings.session_idle_seconds // 2
    elapsed = 0
    while elapsed + step < lifetime:
        clock.advance(seconds=step)
        elapsed += step
        assert client.get("/v1/auth/me").status_code == 200, elapsed
    clock.advance(seconds=lifetime - elapsed)
    assert client.get("/v1/auth/me").status_code == 401
    sign_in(client, "rita")  # a new sign-in starts a new session
    assert client.get("/v1/auth/me").status_code == 200


def test_sign_in_rotates_the_session_id(service: Service) -> None:
    service.add_user("rita")
    service.add_user("mallory")
    attacker = service.client()
    attacker.get("/login")  # a pre-login cookie (anonymous CSRF token only)
    planted = attacker.cookies[COOKIE]
    victim = service.client()
    plant(victim, planted)  # session fixation: the victim signs in with it
    sign_in(victim, "rita")
    assert victim.cookies[COOKIE] != planted
    assert attacker.get("/v1/auth/me").status_code == 401
    first = victim.cookies[COOKIE]
    sign_in(victim, "rita")  # signing in again replaces (revokes) the earlier session
    assert victim.cookies[COOKIE] != first
    stale = service.client()
    plant(stale, first)
    assert stale.get("/v1/auth/me").status_code == 401
    assert victim.get("/v1/auth/me").json()["username"] == "rita"


def test_csrf_token_is_bound_to_the_session(service: Service) -> None:
    rita = service.reviewer("rita")
    sam = service.reviewer("sam")
    sam.headers["X-CSRF-Token"] = rita.headers["X-CSRF-Token"]
    forged = sam.post("/v1/review/claim", json={"limit": 1})
    assert forged.status_code == 403 and forged.json()["detail"]["reason"] == "csrf"
    assert rita.post("/v1/review/claim", json={"limit": 1}).status_code == 200
    assert rita.get("/v1/auth/me").json()["csrf_token"] == rita.headers["X-CSRF-Token"]


def _claimed_by(service: Service, user_id: int | None) -> list[int]:
    with service.sessions() as session:
        return list(
            session.scalars(
                select(ReviewItem.id).where(
                    ReviewItem.status == ItemStatus.CLAIMED.value,
                    ReviewItem.claimed_by == user_id,
                )
            )
        )


def test_claims_go_back_to_the_queue_at_logout(service: Service) -> None:
    ids = _queue(service, 3)
    rita, sam = service.reviewer("rita"), service.reviewer("sam")
    rita_id = rita.get("/v1/auth/me").json()["id"]
    held = rita.post("/v1/review/claim", json={"limit": 2}).json()["items"]
    assert [i["upload_id"] for i in held] == ids[:2]
    second_tab = service.client()  # rita also signed in on another device
    sign_in(second_tab, "rita")
    assert second_tab.post("/v1/auth/logout").status_code == 204
    assert len(_claimed_by(service, rita_id)) == 2  # still signed in elsewhere: kept
    assert rita.post("/v1/auth/logout").status_code == 204
    assert _claimed_by(service, rita_id) == []
    got = sam.post("/v1/review/claim", json={"limit": 3}).json()["items"]
    assert [i["upload_id"] for i in got] == ids  # at once, not after the claim TTL


def test_admin_signs_a_user_out_everywhere(service: Service) -> None:
    _queue(service, 2)
    rita, phone = service.reviewer("rita"), service.client()
    sign_in(phone, "rita")
    rita_id = rita.get("/v1/auth/me").json()["id"]
    rita.post("/v1/review/claim", json={"limit": 2})
    url = f"/v1/admin/users/{rita_id}/signout-all"
    assert rita.post(url).status_code == 403  # reviewers may not
    admin = service.reviewer("ada", "admin")
    no_csrf = service.client()
    plant(no_csrf, admin.cookies[COOKIE])
    assert no_csrf.post(url).status_code == 403
    done = admin.post(url)
    assert done.status_code == 200, done.text
    assert done.json() == {
        "user_id": rita_id,
        "username": "rita",
        "revoked_sessions": 2,
        "released_items": 2,
    }
    assert rita.get("/v1/auth/me").status_code == 401
    assert phone.get("/v1/auth/me").status_code == 401
    assert admin.get("/v1/auth/me").status_code == 200
    assert admin.post("/v1/admin/users/999/signout-all").status_code == 404
    with service.sessions() as session:
        event = session.scalars(select(AuthEvent).where(AuthEvent.kind == "signout_all")).one()
        assert event.user_id == rita_id and event.actor_id is not None
    sign_in(rita, "rita")  # signing in again works
    assert rita.get("/v1/auth/me").status_code == 200


@pytest.mark.parametrize("path", ["/v1/auth/me", "/v1/review/history"])
def test_disabled_users_lose_their_session(service: Service, path: str) -> None:
    from photosieve.service import users

    rita = service.reviewer("rita")
    assert rita.get(path).status_code == 200
    with service.sessions() as session:
        done = users.set_active(session, "rita", False)
    assert done.sessions == 1
    assert rita.get(path).status_code == 401
    refused = rita.post("/v1/auth/login", json={"username": "rita", "password": PASSWORD})
    assert refused.status_code == 401
