"""Signed webhooks with a real local receiver (an HTTP server in a thread), SQLite and PostgreSQL.

The receiver checks every signature with the `standardwebhooks` library (not our own code); a
failing receiver (500 twice, then 200) is retried by the service's worker thread with back-off;
every attempt is in the delivery log (`/v1/admin/webhooks/deliveries`, the admin page).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from typer.testing import CliRunner

from photosieve.service.webhooks import WebhookUrlError, check_url
from photosieve.store import accounts, webhooks
from photosieve.store.db import begin_write
from service_harness import Service, build_service, drawn_photo


class Receiver:
    """A forum's webhook endpoint: verifies each request, answers the next planned status."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.secret = ""
        self.requests: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                try:
                    Webhook(receiver.secret).verify(body, dict(self.headers.items()))
                    verified = True
                except WebhookVerificationError:
                    verified = False
                tampered = body.replace(b"offensive", b"ok")
                try:
                    Webhook(receiver.secret).verify(tampered, dict(self.headers.items()))
                    tamper_caught = False
                except WebhookVerificationError:
                    tamper_caught = True
                i = len(receiver.requests)
                status = receiver.statuses[min(i, len(receiver.statuses) - 1)]
                receiver.requests.append({"headers": dict(self.headers.items()), "body": body,
                                          "verified": verified, "tamper_caught": tamper_caught,
                                          "answered": status})  # fmt: skip
                self.send_response(status if verified else 400)
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/photosieve"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hooked(tmp_path: Path, db_url: str, tiny_bundle: Any, embedder: Any) -> Iterator[Service]:
    """The service with http webhooks to localhost allowed, no undo wait, quick retries."""
    svc = build_service(
        tmp_path, db_url, tiny_bundle, embedder, webhook_allow_http_localhost=True,
        undo_window_seconds=0, webhook_backoff_seconds=0.2, webhook_poll_seconds=0.05,
        webhook_max_attempts=3,
    )  # fmt: skip
    yield svc
    svc.close()


def _point_webhook(svc: Service, receiver: Receiver) -> None:
    with svc.sessions() as session:
        begin_write(session)
        client = accounts.get_client(session, "forum")
        assert client is not None
        webhooks.set_webhook(session, client, receiver.url, rotate=False)
        session.commit()
        assert client.webhook_secret and client.webhook_secret.startswith("whsec_")
        receiver.secret = client.webhook_secret


def _upload_and_decide(svc: Service, seed: int, label: str) -> str:
    response = svc.upload(svc.api(), drawn_photo(seed))
    assert response.status_code == 201, response.text
    rita = svc.reviewer("rita")
    items = rita.post("/v1/review/claim", json={"limit": 5}).json()["items"]
    item = next(i for i in items if i["upload_id"] == response.json()["id"])
    decided = rita.post(f"/v1/review/items/{item['id']}/decision", json={"label": label})
    assert decided.status_code == 200, decided.text
    return str(response.json()["id"])


def _wait(condition: Any, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_signed_webhook_retried_until_the_receiver_accepts(hooked: Service) -> None:
    """500, 500, then 200: three signed POSTs of one event by the worker thread, logged."""
    with Receiver([500, 500, 200]) as receiver, hooked.client() as running:  # lifespan: worker
        _point_webhook(hooked, receiver)
        upload_id = _upload_and_decide(hooked, 11, "offensive")
        _wait(lambda: len(receiver.requests) >= 3)
        admin = hooked.reviewer("ada", role="admin")
        _wait(lambda: admin.get("/v1/admin/webhooks/deliveries").json()[0]["status"] != "pending")
        log = admin.get("/v1/admin/webhooks/deliveries").json()
        page = admin.get("/admin").text
        assert running.get("/healthz").status_code == 200
    assert [r["answered"] for r in receiver.requests] == [500, 500, 200]
    assert all(r["verified"] and r["tamper_caught"] for r in receiver.requests)
    ids = {r["headers"]["webhook-id"] for r in receiver.requests}
    assert len(ids) == 1  # one event, retried: the receiver dedupes on webhook-id
    event = json.loads(receiver.requests[-1]["body"])
    assert event["type"] == "upload.decided"
    expected = {"upload_id": upload_id, "decision": "removed", "label": "offensive",
                "final": True, "review_kind": "model_band"}  # fmt: skip
    assert event["data"] | expected == event["data"]
    [row] = log
    assert row["event_id"] in ids and row["client"] == "forum" and row["upload_id"] == upload_id
    assert (row["status"], row["attempts"], row["last_status_code"]) == ("delivered", 3, 200)
    assert row["delivered_at"] is not None and row["last_error"] is None
    assert row["event_id"] in page and "webhook-deliveries" in page
    metrics = hooked.client().get("/metrics").text
    assert 'photosieve_webhook_deliveries{status="delivered"} 1' in metrics


def test_a_receiver_that_keeps_failing_is_given_up_after_the_last_attempt(
    hooked: Service,
) -> None:
    with Receiver([503]) as receiver:
        _point_webhook(hooked, receiver)
        _upload_and_decide(hooked, 12, "ok")
        sender = hooked.app.state.webhooks
        time.sleep(1.1)  # due 1 s after the undo window (here 0 s)
        assert sender.deliver_due() == 1  # attempt 1; the retry is not due yet
        assert sender.deliver_due() == 0
        for _ in range(2):
            time.sleep(0.5)  # back-off 0.2 s, then 0.4 s
            assert sender.deliver_due() == 1
        time.sleep(0.5)
        assert sender.deliver_due() == 0  # failed for good: nothing due any more
    admin = hooked.reviewer("ada", role="admin")
    [row] = admin.get("/v1/admin/webhooks/deliveries").json()
    assert (row["status"], row["attempts"], row["last_status_code"]) == ("failed", 3, 503)
    assert "HTTP 503" in row["last_error"] and row["next_attempt_at"] is None
    assert len(receiver.requests) == 3 and all(r["verified"] for r in receiver.requests)


def test_an_undone_decision_is_never_sent(tmp_path: Path, tiny_bundle: Any, embedder: Any) -> None:
    """The event waits for the undo window; undoing within it cancels the event."""
    svc = build_service(
        tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}", tiny_bundle, embedder,
        webhook_allow_http_localhost=True, undo_window_seconds=60,
    )  # fmt: skip
    try:
        with Receiver([200]) as receiver:
            _point_webhook(svc, receiver)
            response = svc.upload(svc.api(), drawn_photo(13))
            rita = svc.reviewer("rita")
            [item] = rita.post("/v1/review/claim", json={"limit": 1}).json()["items"]
            decided = rita.post(f"/v1/review/items/{item['id']}/decision", json={"label": "ok"})
            assert svc.app.state.webhooks.deliver_due() == 0  # inside the undo window
            undone = rita.post(f"/v1/review/decisions/{decided.json()['id']}/undo")
            assert undone.status_code == 200, undone.text
            assert svc.app.state.webhooks.deliver_due() == 0
        with svc.sessions() as session:
            [(row, _)] = webhooks.recent(session)
        assert row.status == "cancelled" and row.upload_id == response.json()["id"]
        assert receiver.requests == []
    finally:
        svc.close()


@pytest.mark.parametrize(
    ("url", "allow", "ok"),
    [
        ("https://forum.example/hooks", False, True),
        ("http://forum.example/hooks", True, False),  # plain http leaves the machine: never
        ("http://127.0.0.1:9000/h", False, False),
        ("http://127.0.0.1:9000/h", True, True),
        ("http://localhost/h", True, True),
        ("https://user:pw@forum.example/h", False, False),
        ("ftp://forum.example/h", False, False),
        ("/relative", False, False),
    ],
)
def test_callback_urls_are_checked(url: str, allow: bool, ok: bool) -> None:
    if ok:
        assert check_url(url, allow_http_localhost=allow) == url
    else:
        with pytest.raises(WebhookUrlError):
            check_url(url, allow_http_localhost=allow)


def test_webhook_cli_sets_shows_and_refuses(tmp_path: Path) -> None:
    from photosieve.cli import app

    runner = CliRunner()
    base = ["client", "--workdir", str(tmp_path)]
    made = runner.invoke(app, ["apikey", "--workdir", str(tmp_path), "create", "forum"])
    assert made.exit_code == 0, made.output
    refused = runner.invoke(app, [*base, "webhook", "set", "forum", "http://forum.example/h"])
    assert refused.exit_code != 0 and "https://" in refused.output
    done = runner.invoke(app, [*base, "webhook", "set", "forum", "https://forum.example/h"])
    assert done.exit_code == 0, done.output
    secret = done.output.split("signing secret")[1].split(": ", 1)[1].strip()
    assert secret.startswith("whsec_")
    shown = runner.invoke(app, [*base, "webhook", "show", "forum"])
    assert "https://forum.example/h" in shown.output and secret in shown.output
    again = runner.invoke(app, [*base, "webhook", "set", "forum", "https://forum.example/h2"])
    assert "signing secret" not in again.output  # kept unless --rotate
    rotated = runner.invoke(
        app, [*base, "webhook", "set", "forum", "https://forum.example/h2", "--rotate"]
    )
    assert "signing secret" in rotated.output and secret not in rotated.output
