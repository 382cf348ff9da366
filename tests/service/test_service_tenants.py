"""Tenants and idempotency (issue 9, findings 4 and 10), on SQLite and PostgreSQL.

API keys are scoped to their client: another client's upload is a 404 for GET and appeal, the
same answer as an id that does not exist. Reviewers see all. `Idempotency-Key` retries return
the first upload, also when they race each other over real HTTP.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from live_server import LiveServer
from photosieve.store.models import Client, Upload
from service_harness import APPROVE_ALL, REMOVE_ALL, Service, drawn_photo, make_scorer


def _uploads(service: Service) -> int:
    with service.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Upload)) or 0)


def test_keys_see_only_their_own_clients_uploads(service: Service) -> None:
    service.set_policy(REMOVE_ALL)
    forum = service.api()
    other = service.api(service.new_key("blog"))
    upload = service.upload(forum, drawn_photo(1), "forum-user").json()
    missing = other.get("/v1/uploads/doesnotexist00000000")
    foreign = other.get(f"/v1/uploads/{upload['id']}")
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json()["detail"]["reason"] == missing.json()["detail"]["reason"] == "not_found"
    assert "forum-user" not in foreign.text  # nothing of the upload leaks
    appeal = other.post(f"/v1/uploads/{upload['id']}/appeal", json={"reason": "mine!"})
    assert appeal.status_code == 404
    with service.sessions() as session:
        row = session.get(Upload, upload["id"])
        assert row is not None and row.appealed_at is None and row.appeal_reason is None
    assert forum.get(f"/v1/uploads/{upload['id']}").json()["user_id"] == "forum-user"
    # A second key of the same client sees the client's uploads.
    sibling = service.api(service.new_key("forum-2", client="forum"))
    assert sibling.get(f"/v1/uploads/{upload['id']}").status_code == 200
    # Reviewers and admins see every client's uploads.
    for reviewer in (service.reviewer("rita"), service.reviewer("ada", role="admin")):
        assert reviewer.get(f"/v1/uploads/{upload['id']}").status_code == 200
    own = service.upload(other, drawn_photo(2)).json()
    assert forum.get(f"/v1/uploads/{own['id']}").status_code == 404
    assert other.post(f"/v1/uploads/{own['id']}/appeal").status_code == 200
    with service.sessions() as session:
        clients = dict(session.execute(select(Upload.id, Client.name).join(Client)).all())
    assert clients == {upload["id"]: "forum", own["id"]: "blog"}


def test_revoked_keys_and_deactivated_clients_are_refused(service: Service) -> None:
    from photosieve.store import accounts

    service.set_policy(APPROVE_ALL)
    key = service.new_key("shop")
    api = service.api(key)
    assert service.upload(api, drawn_photo(3)).status_code == 201
    with service.sessions() as session:
        accounts.set_client_active(session, "shop", False)
        session.commit()
    assert service.upload(api, drawn_photo(4)).status_code == 401
    with service.sessions() as session:
        accounts.set_client_active(session, "shop", True)
        accounts.revoke_api_key(session, "shop")
        session.commit()
    refused = service.upload(api, drawn_photo(5))
    assert refused.status_code == 401 and refused.json()["detail"]["reason"] == "unauthorized"


def test_idempotent_retry_returns_the_first_upload(service: Service) -> None:
    service.set_policy(REMOVE_ALL)
    forum = service.api()
    data = drawn_photo(6)
    first = service.upload(forum, data, "u7", key="retry-1")
    assert first.status_code == 201 and "idempotent-replayed" not in first.headers
    again = service.upload(forum, data, "u7", key="retry-1")
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["decision"] == first.json()["decision"] == "removed"
    assert again.headers["location"] == first.headers["location"]
    assert _uploads(service) == 1
    # Another photo or user_id under the same key is refused, not silently replayed.
    for other_data, user in ((drawn_photo(7), "u7"), (data, "u8")):
        reused = service.upload(forum, other_data, user, key="retry-1")
        assert reused.status_code == 422
        assert reused.json()["detail"]["reason"] == "idempotency_key_reused"
    # The same key from another client is another upload; no key at all is always new.
    blog = service.upload(service.api(service.new_key("blog")), data, "u7", key="retry-1")
    assert blog.status_code == 201 and blog.json()["id"] != first.json()["id"]
    assert service.upload(forum, data, "u7").status_code == 201
    assert _uploads(service) == 3
    bad = service.upload(forum, data, "u7", key="x" * 129)
    assert bad.status_code == 422
    assert bad.json()["detail"]["reason"] == "idempotency_key_too_long"


def test_replay_reports_the_queue_it_went_to(service: Service) -> None:
    service.set_policy(APPROVE_ALL)
    service.settings.audit_rate = 1.0
    forum = service.api()
    first = service.upload(forum, drawn_photo(8), key="audit-1").json()
    again = service.upload(forum, drawn_photo(8), key="audit-1").json()
    assert first["queued_as"] == again["queued_as"] == "audit"


def _post(url: str, key: str, photo: bytes, results: list[Any]) -> None:
    with httpx.Client(base_url=url, timeout=60) as client:
        response = client.post(
            "/v1/uploads",
            files={"image": ("a.jpg", photo, "image/jpeg")},
            data={"user_id": "racer"},
            headers={"Authorization": f"Bearer {key}", "Idempotency-Key": "race-1"},
        )
        results.append((response.status_code, response.json().get("id")))


class _Gate:
    """A scorer that holds scoring until all `n` requests got past the idempotency look-up:
    each is in a model call or waits for the next one (the micro-batcher's queue)."""

    def __init__(self, scorer: Any, n: int, batcher: Any) -> None:
        self.scorer = scorer
        self.n = n
        self.batcher = batcher
        self.seen = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.scorer, name)

    def score_images(self, images: Any) -> Any:
        self.seen += len(images)  # one photo per request
        deadline = time.monotonic() + 30
        while self.seen + self.batcher.waiting() < self.n:
            assert time.monotonic() < deadline, "not every request reached scoring"
            time.sleep(0.005)
        return self.scorer.score_images(images)


def test_racing_retries_over_http_make_one_upload(service: Service) -> None:
    """Six retries all pass the first look-up before any commits; the unique (client, key)
    index keeps one row and the losers answer with the winner's upload."""
    service.set_policy(APPROVE_ALL)
    moderator = service.app.state.moderator
    moderator.scorer = _Gate(moderator.scorer, 6, service.app.state.batcher)
    photo = drawn_photo(9)
    results: list[Any] = []
    with LiveServer(service.app) as server:
        threads = [
            threading.Thread(target=_post, args=(server.url, service.api_key, photo, results))
            for _ in range(6)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    assert len(results) == 6
    assert sorted(code for code, _ in results) == [200] * 5 + [201]
    assert len({upload_id for _, upload_id in results}) == 1
    assert _uploads(service) == 1
    images = service.app.state.images
    assert len(images.files()) == 1 and images.staged() == []


def test_cli_clients_and_keys(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_bundle: Any, embedder: Any
) -> None:
    from fastapi.testclient import TestClient

    from photosieve.cli import app as cli_app
    from photosieve.service.app import create_app
    from photosieve.service.config import Settings

    monkeypatch.setenv("PHOTOSIEVE_WORKDIR", str(tmp_path))
    monkeypatch.setenv("COLUMNS", "200")
    runner = CliRunner()
    made = runner.invoke(cli_app, ["apikey", "create", "forum-a", "--client", "forum"])
    assert made.exit_code == 0 and "client 'forum'" in made.output
    key_a = made.output.strip().splitlines()[-1]
    made = runner.invoke(cli_app, ["apikey", "create", "blog"])  # client defaults to its name
    assert made.exit_code == 0 and "client 'blog'" in made.output
    key_b = made.output.strip().splitlines()[-1]
    dup = runner.invoke(cli_app, ["apikey", "create", "blog"])
    assert dup.exit_code != 0 and "already exists" in dup.output
    listed = runner.invoke(cli_app, ["apikey", "list"])
    assert listed.exit_code == 0 and "forum-a" in listed.output and key_a not in listed.output
    clients = runner.invoke(cli_app, ["client", "list"])
    assert clients.exit_code == 0
    assert {"default", "forum", "blog"} <= set(clients.output.split())
    app = create_app(Settings(), scorer=make_scorer(tiny_bundle, embedder, APPROVE_ALL))
    with TestClient(app) as client:
        files = {"image": ("a.jpg", drawn_photo(10), "image/jpeg")}
        upload = client.post(
            "/v1/uploads",
            files=files,
            data={"user_id": "u"},
            headers={"Authorization": f"Bearer {key_a}"},
        )
        assert upload.status_code == 201
        path = f"/v1/uploads/{upload.json()['id']}"
        assert client.get(path, headers={"X-API-Key": key_b}).status_code == 404
        assert runner.invoke(cli_app, ["apikey", "revoke", "forum-a"]).exit_code == 0
        assert client.get(path, headers={"X-API-Key": key_a}).status_code == 401
        assert runner.invoke(cli_app, ["client", "deactivate", "blog"]).exit_code == 0
        assert client.get(path, headers={"X-API-Key": key_b}).status_code == 401
        unknown = runner.invoke(cli_app, ["apikey", "revoke", "nope"])
        assert unknown.exit_code != 0 and "no API key" in unknown.output
    app.state.engine.dispose()


def test_demo_key_works_and_belongs_to_the_demo_client(
    tmp_path: Path, tiny_bundle: Any, embedder: Any
) -> None:
    from fastapi.testclient import TestClient

    from photosieve.cli import demo
    from photosieve.service.app import create_app
    from photosieve.service.config import Settings

    demo._first_login(tmp_path)
    key = demo._api_key(tmp_path)
    app = create_app(
        Settings(workdir=tmp_path), scorer=make_scorer(tiny_bundle, embedder, APPROVE_ALL)
    )
    with TestClient(app) as client:
        upload = client.post(
            "/v1/uploads",
            files={"image": ("a.jpg", drawn_photo(11), "image/jpeg")},
            data={"user_id": "u"},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert upload.status_code == 201
    with app.state.sessions() as session:
        name = session.scalar(select(Client.name).join(Upload, Upload.client_id == Client.id))
    assert name == demo.DEMO_CLIENT
    app.state.engine.dispose()
