"""Issue 9 "Trust": the session secret (generated once, 0600, reused; placeholders refused at
start) and user administration from the CLI against a running app, on SQLite and PostgreSQL."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from photosieve.cli import app as cli_app
from photosieve.service import app as app_module
from photosieve.service.app import create_app
from photosieve.service.config import Settings
from photosieve.service.secret_key import load_or_create
from service_harness import PASSWORD, REVIEW_ALL, drawn_photo, make_scorer, sign_in


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch, tiny_bundle: Any, embedder: Any) -> list[FastAPI]:
    """`photosieve serve` with the tiny bundle, returning its apps instead of serving them."""
    import uvicorn

    apps: list[FastAPI] = []
    monkeypatch.setattr(
        app_module,
        "load_live_scorer",
        lambda _db, _s: make_scorer(tiny_bundle, embedder, REVIEW_ALL),
    )
    monkeypatch.setattr(uvicorn, "run", lambda app, **_kw: apps.append(app))
    return apps


def test_serve_creates_a_0600_secret_once_and_reuses_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, served: list[FastAPI]
) -> None:
    monkeypatch.setenv("PHOTOSIEVE_WORKDIR", str(tmp_path))
    monkeypatch.delenv("PHOTOSIEVE_SECRET_KEY", raising=False)
    runner = CliRunner()
    assert runner.invoke(cli_app, ["user", "add", "rita", "--password", PASSWORD]).exit_code == 0
    first = runner.invoke(cli_app, ["serve"])
    assert first.exit_code == 0, first.output
    key_file = tmp_path / "service" / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_text()
    assert len(key.strip()) >= 32
    with TestClient(served[0]) as client:
        sign_in(client, "rita")
        cookie = client.cookies["photosieve_session"]
    second = runner.invoke(cli_app, ["serve"])  # a restart
    assert second.exit_code == 0, second.output
    assert key_file.read_text() == key
    with TestClient(served[1]) as client:
        client.cookies.set("photosieve_session", cookie)
        assert client.get("/v1/auth/me").json()["username"] == "rita"  # survived the restart
    for app in served:
        app.state.engine.dispose()


@pytest.mark.parametrize("secret", ["change-me", "changeme-changeme-changeme-changeme", "short"])
def test_serve_refuses_a_placeholder_or_weak_secret(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, served: list[FastAPI], secret: str
) -> None:
    monkeypatch.setenv("PHOTOSIEVE_WORKDIR", str(tmp_path))
    monkeypatch.setenv("PHOTOSIEVE_SECRET_KEY", secret)
    result = CliRunner().invoke(cli_app, ["serve"])
    assert result.exit_code != 0 and served == []
    assert "PHOTOSIEVE_SECRET_KEY" in result.output
    assert "placeholder" in result.output or "too short" in result.output


def test_secret_file_is_tightened_and_a_weak_one_refused(tmp_path: Path) -> None:
    path = tmp_path / "secret_key"
    path.write_text("k7Gq2pLx9VwR4tZ8bN1mC6yH3sD5fJ0aE\n")
    path.chmod(0o644)
    assert load_or_create(path).startswith("k7Gq")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_text("change-me\n")
    with pytest.raises(ValueError, match="placeholder"):
        load_or_create(path)
    settings = Settings(workdir=tmp_path)
    settings.secret_key_file.parent.mkdir(parents=True)
    path.rename(settings.secret_key_file)
    with pytest.raises(ValueError, match="placeholder"):
        create_app(settings, scorer=None)  # refused before anything else starts


def test_cli_user_administration_ends_sessions(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str, tiny_bundle: Any, embedder: Any
) -> None:
    monkeypatch.setenv("PHOTOSIEVE_WORKDIR", str(tmp_path))
    monkeypatch.setenv("PHOTOSIEVE_DATABASE_URL", db_url)
    runner = CliRunner()

    def cli(*args: str) -> str:
        result = runner.invoke(cli_app, list(args))
        assert result.exit_code == 0, result.output
        return result.output

    cli("user", "add", "rita", "--password", PASSWORD)
    cli("user", "add", "ada", "--role", "admin", "--password", PASSWORD)
    app = create_app(Settings(), scorer=make_scorer(tiny_bundle, embedder, REVIEW_ALL))
    with TestClient(app) as api, TestClient(app) as rita:
        with app.state.sessions() as session:
            from photosieve.store import accounts

            _, key = accounts.create_api_key(session, "forum")
            session.commit()
        api.headers["Authorization"] = f"Bearer {key}"
        for seed in (1, 2):
            upload = api.post(
                "/v1/uploads",
                files={"image": ("a.jpg", drawn_photo(seed), "image/jpeg")},
                data={"user_id": "u"},
            )
            assert upload.status_code == 201
        sign_in(rita, "rita")
        assert len(rita.post("/v1/review/claim", json={"limit": 2}).json()["items"]) == 2
        listed = cli("user", "list")
        assert "rita" in listed and "ada" in listed and "admin" in listed

        assert "2 claimed items back" in cli("user", "signout-all", "rita")
        assert rita.get("/v1/auth/me").status_code == 401

        sign_in(rita, "rita")
        new_password = "a brand new passphrase"
        assert "1 sessions revoked" in cli(
            "user", "set-password", "rita", "--password", new_password
        )
        assert rita.get("/v1/auth/me").status_code == 401
        old = rita.post("/v1/auth/login", json={"username": "rita", "password": PASSWORD})
        assert old.status_code == 401
        fresh = rita.post("/v1/auth/login", json={"username": "rita", "password": new_password})
        assert fresh.status_code == 200

        assert "1 sessions revoked" in cli("user", "disable", "rita")
        assert rita.get("/v1/auth/me").status_code == 401
        again = rita.post("/v1/auth/login", json={"username": "rita", "password": new_password})
        assert again.status_code == 401
        assert "disabled" in cli("user", "list")
        cli("user", "enable", "rita")
        enabled = rita.post("/v1/auth/login", json={"username": "rita", "password": new_password})
        assert enabled.status_code == 200

    unknown = runner.invoke(cli_app, ["user", "disable", "nobody"])
    assert unknown.exit_code != 0 and "no user 'nobody'" in unknown.output
    short = runner.invoke(cli_app, ["user", "set-password", "rita", "--password", "short"])
    assert short.exit_code != 0 and "at least" in short.output
    app.state.engine.dispose()
