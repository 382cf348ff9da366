"""Settings refuse unsafe defaults; the CLI creates reviewers and API keys the service accepts."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from photosieve.cli import app as cli_app
from photosieve.service.app import create_app
from photosieve.service.config import Settings
from service_harness import APPROVE_ALL, PASSWORD, make_scorer


@pytest.mark.parametrize("environment", ["development", "test", "production"])
def test_placeholder_and_weak_secrets_are_refused_everywhere(
    monkeypatch: pytest.MonkeyPatch, environment: str
) -> None:
    monkeypatch.setenv("PHOTOSIEVE_ENVIRONMENT", environment)
    monkeypatch.setenv("PHOTOSIEVE_SECRET_KEY", "change-me")
    with pytest.raises(ValidationError, match="placeholder"):
        Settings()
    for placeholder in ("changeme", "change-me-change-me-change-me-change-me", "CHANGE_ME" * 5):
        with pytest.raises(ValidationError, match="placeholder"):
            Settings(secret_key=placeholder)
    with pytest.raises(ValidationError, match="too short"):
        Settings(secret_key="short-but-random-7f3k")
    with pytest.raises(ValidationError, match="not random"):
        Settings(secret_key="ab" * 20)
    monkeypatch.setenv("PHOTOSIEVE_SECRET_KEY", secrets.token_urlsafe(32))
    assert Settings().environment == environment
    monkeypatch.delenv("PHOTOSIEVE_SECRET_KEY")
    assert Settings().secret_key is None  # → generated in the workdir at start


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PHOTOSIEVE_WORKDIR", str(tmp_path))
    monkeypatch.setenv("PHOTOSIEVE_AUDIT_RATE", "0.25")
    monkeypatch.setenv("PHOTOSIEVE_MAX_UPLOAD_BYTES", "12345")
    settings = Settings()
    assert settings.audit_rate == 0.25 and settings.max_upload_bytes == 12345
    assert settings.resolved_database_url == f"sqlite:///{tmp_path / 'service' / 'photosieve.db'}"
    assert settings.resolved_data_dir == tmp_path / "service" / "images"
    assert settings.resolved_bundle_path == tmp_path / "bundle"
    monkeypatch.setenv("PHOTOSIEVE_AUDIT_RATE", "1.5")
    with pytest.raises(ValidationError):
        Settings()


def test_missing_bundle_is_an_actionable_error(tmp_path: Path) -> None:
    settings = Settings(workdir=tmp_path, bundle_path=tmp_path / "nowhere")
    with pytest.raises(ValueError, match="no model bundle"):
        create_app(settings)


def test_cli_user_and_apikey_work_with_the_service(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_bundle: Any, embedder: Any
) -> None:
    from fastapi.testclient import TestClient

    from service_harness import drawn_photo

    monkeypatch.setenv("PHOTOSIEVE_WORKDIR", str(tmp_path))
    runner = CliRunner()
    added = runner.invoke(cli_app, ["user", "add", "rita", "--password", PASSWORD])
    assert added.exit_code == 0 and "created reviewer 'rita'" in added.output
    dup = runner.invoke(cli_app, ["user", "add", "rita", "--password", PASSWORD])
    assert dup.exit_code != 0 and "already exists" in dup.output
    short = runner.invoke(cli_app, ["user", "add", "sam", "--password", "short"])
    assert short.exit_code != 0
    prompted = runner.invoke(
        cli_app, ["user", "add", "ada", "--role", "admin"], input=f"{PASSWORD}\n{PASSWORD}\n"
    )
    assert prompted.exit_code == 0 and "created admin 'ada'" in prompted.output
    created = runner.invoke(cli_app, ["apikey", "create", "forum"])
    assert created.exit_code == 0
    key = created.output.strip().splitlines()[-1]
    app = create_app(Settings(), scorer=make_scorer(tiny_bundle, embedder, APPROVE_ALL))
    with TestClient(app) as client:
        upload = client.post(
            "/v1/uploads",
            files={"image": ("a.jpg", drawn_photo(1), "image/jpeg")},
            data={"user_id": "u"},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert upload.status_code == 201
        login = client.post("/v1/auth/login", json={"username": "rita", "password": PASSWORD})
        assert login.status_code == 200 and login.json()["role"] == "reviewer"
    app.state.engine.dispose()


def test_serve_with_workers_prepares_once_then_hands_uvicorn_the_factory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_bundle: Any
) -> None:
    """`serve --workers 2`: checks, the secret key and migrations in the parent, then uvicorn
    imports `create_app` in each worker (settings from the environment)."""
    import uvicorn

    from photosieve.store.db import current_revision, make_engine

    monkeypatch.setenv("PHOTOSIEVE_WORKDIR", str(tmp_path))
    monkeypatch.setenv("PHOTOSIEVE_ONNX_THREADS", "1")  # restored afterwards (serve sets it)
    runner = CliRunner()
    missing = runner.invoke(cli_app, ["serve", "--workers", "2"])
    assert missing.exit_code != 0 and "no model bundle" in missing.output
    assert "Traceback" not in missing.output

    monkeypatch.setenv("PHOTOSIEVE_BUNDLE_PATH", str(tiny_bundle.save(tmp_path / "bundle")))
    calls: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append((app, kw)))
    served = runner.invoke(cli_app, ["serve", "--workers", "2", "--port", "8123"])
    assert served.exit_code == 0, served.output
    assert calls == [
        ("photosieve.service.app:create_app",
         {"factory": True, "workers": 2, "host": "127.0.0.1", "port": 8123, "log_level": "info"})
    ]  # fmt: skip
    settings = Settings()
    assert settings.secret_key_file.is_file()
    engine = make_engine(settings.resolved_database_url)
    assert current_revision(engine) is not None
    engine.dispose()


def test_micro_batches_default_to_four_images_an_onnx_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A batch's model time stays short (p99 at 16 clients, bench/README.md), whatever the cores."""
    monkeypatch.delenv("PHOTOSIEVE_BATCH_MAX", raising=False)
    monkeypatch.delenv("PHOTOSIEVE_ONNX_THREADS", raising=False)
    assert Settings(onnx_threads=1).resolved_batch_max == 4
    assert Settings(onnx_threads=8).resolved_batch_max == 32
    assert Settings().resolved_batch_max == 4 * Settings().resolved_onnx_threads
    assert Settings(onnx_threads=8, batch_max=3).resolved_batch_max == 3
    with pytest.raises(ValidationError):
        Settings(batch_max=0)
