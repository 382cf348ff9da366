"""Issue 9 "Trust": password guessing is throttled per username and per client address, before
any argon2 work, and every attempt is in the audit log; on SQLite and PostgreSQL."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from live_server import LiveServer
from photosieve.bundle import ModelBundle
from photosieve.service import security
from photosieve.store.models import AuthEvent
from service_harness import PASSWORD, FakeClock, Service, build_service


def _login(client: Any, username: str, password: str) -> httpx.Response:
    response: httpx.Response = client.post(
        "/v1/auth/login", json={"username": username, "password": password}
    )
    return response


def _events(service: Service, username: str) -> Counter[str]:
    with service.sessions() as session:
        rows = session.execute(
            select(AuthEvent.kind, func.count())
            .where(AuthEvent.username == username)
            .group_by(AuthEvent.kind)
        ).all()
    return Counter({kind: int(n) for kind, n in rows})


def _assert_throttled(response: httpx.Response, at_least: int = 1) -> int:
    assert response.status_code == 429, response.text
    assert response.json()["detail"]["reason"] == "too_many_attempts"
    assert "try again" in response.json()["detail"]["message"]
    retry_after = int(response.headers["Retry-After"])
    assert at_least <= retry_after
    return retry_after


def test_fifty_concurrent_wrong_passwords_then_the_right_one(service: Service) -> None:
    service.add_user("ada", "admin")
    limit = service.settings.login_max_failures
    with (
        LiveServer(service.app) as server,
        httpx.Client(base_url=server.url, timeout=60) as client,
        ThreadPoolExecutor(max_workers=16) as pool,
    ):
        guesses = [f"wrong-password-{i}" for i in range(50)]
        answers = list(pool.map(lambda p: _login(client, "ada", p), guesses))
        codes = Counter(r.status_code for r in answers)
        assert codes == {401: limit, 429: 50 - limit}, codes
        for response in answers:
            if response.status_code == 429:
                _assert_throttled(response)
        right = _login(client, "ada", PASSWORD)  # the right password during the lockout
        retry_after = _assert_throttled(right)
        assert retry_after <= service.settings.login_lockout_seconds
        assert "set-cookie" not in right.headers
        assert client.get("/v1/auth/me").status_code == 401
    assert _events(service, "ada") == {"login_failed": limit, "login_throttled": 51 - limit}


def test_lockout_backs_off_exponentially_and_success_resets_it(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    service.app.state.clock = clock
    service.add_user("rita")
    client = service.client()
    settings = service.settings
    verified = Counter[str]()
    real_verify = security.verify_password

    def counting_verify(password_hash: str, password: str) -> bool:
        verified["calls"] += 1
        return real_verify(password_hash, password)

    monkeypatch.setattr(security, "verify_password", counting_verify)
    for _ in range(settings.login_max_failures):
        assert _login(client, "rita", "nope-nope").status_code == 401
    assert verified["calls"] == settings.login_max_failures
    first = _assert_throttled(_login(client, "rita", PASSWORD))
    assert first == settings.login_lockout_seconds
    assert verified["calls"] == settings.login_max_failures  # no argon2 while locked
    clock.advance(seconds=first)
    assert _login(client, "rita", "still-wrong").status_code == 401  # one more guess allowed…
    second = _assert_throttled(_login(client, "rita", PASSWORD))
    assert second == 2 * first  # …and the lockout doubles
    clock.advance(seconds=second)
    ok = _login(client, "rita", PASSWORD)
    assert ok.status_code == 200, ok.text
    for _ in range(settings.login_max_failures - 1):  # the success reset the username's count
        assert _login(client, "rita", "nope-nope").status_code == 401
    assert client.get("/v1/auth/me").status_code == 200  # failures do not end a session
    assert _events(service, "rita") == {
        "login_failed": 2 * settings.login_max_failures,
        "login_ok": 1,
        "login_throttled": 2,
    }


def test_unknown_usernames_are_throttled_the_same_way(service: Service) -> None:
    client = service.client()
    for _ in range(service.settings.login_max_failures):
        assert _login(client, "ghost", "nope-nope").status_code == 401
    _assert_throttled(_login(client, "ghost", "nope-nope"))


@pytest.fixture
def strict_service(
    tmp_path: Path, db_url: str, tiny_bundle: ModelBundle, embedder: Any
) -> Iterator[Service]:
    svc = build_service(tmp_path, db_url, tiny_bundle, embedder, login_max_failures_per_address=4)
    yield svc
    svc.close()


def test_one_address_guessing_many_usernames_is_throttled(strict_service: Service) -> None:
    service = strict_service
    service.add_user("rita")
    client = service.client()  # every TestClient request comes from the address "testclient"
    for name in ("amy", "bob", "cid", "dan"):  # one guess each: under the per-username limit
        assert _login(client, name, "nope-nope").status_code == 401
    _assert_throttled(_login(client, "rita", PASSWORD))  # the address is locked, any username
    with service.sessions() as session:
        throttled = session.scalars(
            select(AuthEvent).where(AuthEvent.kind == "login_throttled")
        ).one()
        assert throttled.client_addr == "testclient" and throttled.username == "rita"
