"""Start-up refusals (finding 9 of issue 9): no empty database silently created beside stored
photos; an unwritable folder is one line naming the path, for the app and the CLI."""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from photosieve.bundle import ModelBundle
from photosieve.cli import app as cli
from photosieve.service.app import create_app
from photosieve.service.config import Settings
from photosieve.service.startup import StartupError
from photosieve.store.db import current_revision, make_engine
from service_harness import REVIEW_ALL, make_scorer


def _settings(workdir: Path, database_url: str | None = None) -> Settings:
    return Settings(
        environment="test",
        secret_key=secrets.token_urlsafe(32),
        workdir=workdir,
        database_url=database_url,
    )


def _store_photos(settings: Settings, n: int = 3) -> None:
    """Photos already in the content-addressed store, as after months of uploads."""
    for i in range(n):
        sha = hashlib.sha256(f"photo {i}".encode()).hexdigest()
        path = settings.resolved_data_dir / sha[:2] / sha[2:4] / sha
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"jpeg bytes")


def _create(settings: Settings, bundle: ModelBundle, embedder: Any) -> Any:
    app = create_app(settings, scorer=make_scorer(bundle, embedder, REVIEW_ALL))
    app.state.engine.dispose()
    return app


def _env(workdir: Path, database_url: str | None = None) -> dict[str, str]:
    env = {"PHOTOSIEVE_WORKDIR": str(workdir), "PHOTOSIEVE_ENVIRONMENT": "development"}
    if database_url:
        env["PHOTOSIEVE_DATABASE_URL"] = database_url
    return env


def test_fresh_install_creates_the_database(
    tmp_path: Path, tiny_bundle: ModelBundle, embedder: Any
) -> None:
    settings = _settings(tmp_path)
    _create(settings, tiny_bundle, embedder)
    assert (tmp_path / "service" / "photosieve.db").is_file()


def test_missing_sqlite_database_beside_photos_is_refused_until_db_upgrade(
    tmp_path: Path, tiny_bundle: ModelBundle, embedder: Any
) -> None:
    settings = _settings(tmp_path)
    _store_photos(settings)
    database = tmp_path / "service" / "photosieve.db"
    with pytest.raises(StartupError) as info:
        _create(settings, tiny_bundle, embedder)
    message = str(info.value)
    assert str(database) in message and str(settings.resolved_data_dir) in message
    assert "photosieve db upgrade" in message and "backup" in message
    assert "\n" not in message
    assert not database.exists()  # nothing created behind the operator's back

    served = CliRunner().invoke(cli, ["serve"], env=_env(tmp_path))
    assert served.exit_code == 1
    assert "photosieve db upgrade" in served.output and str(database) in served.output
    assert "Traceback" not in served.output
    keyed = CliRunner().invoke(cli, ["apikey", "create", "forum"], env=_env(tmp_path))
    assert keyed.exit_code == 1 and not database.exists()

    upgraded = CliRunner().invoke(cli, ["db", "upgrade"], env=_env(tmp_path))
    assert upgraded.exit_code == 0, upgraded.output
    assert str(database) in upgraded.output and "empty →" in upgraded.output
    _create(settings, tiny_bundle, embedder)  # a deliberate, migrated database: starts


@pytest.mark.postgres
def test_empty_postgres_database_beside_photos_is_refused(
    tmp_path: Path, tiny_bundle: ModelBundle, embedder: Any, postgres_ok: bool
) -> None:
    if not postgres_ok:
        pytest.skip("PostgreSQL is not reachable at 127.0.0.1:5432")
    from postgres_db import pg_database

    with pg_database() as url:
        settings = _settings(tmp_path, url)
        _store_photos(settings)
        with pytest.raises(StartupError, match="photosieve db upgrade"):
            _create(settings, tiny_bundle, embedder)
        upgraded = CliRunner().invoke(cli, ["db", "upgrade"], env=_env(tmp_path, url))
        assert upgraded.exit_code == 0, upgraded.output
        engine = make_engine(url)
        assert current_revision(engine) is not None
        engine.dispose()
        _create(settings, tiny_bundle, embedder)


def test_unwritable_store_is_one_line_naming_the_path(
    tmp_path: Path, tiny_bundle: ModelBundle, embedder: Any
) -> None:
    blocker = tmp_path / "images-is-a-file"
    blocker.write_bytes(b"")  # root ignores permissions; a file where a folder belongs does not
    settings = _settings(tmp_path).model_copy(update={"data_dir": blocker / "images"})
    with pytest.raises(StartupError) as info:
        _create(settings, tiny_bundle, embedder)
    assert str(blocker / "images") in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("command", [["serve"], ["demo", "--no-serve"], ["db", "upgrade"]])
def test_cli_unwritable_workdir_is_one_line(tmp_path: Path, command: list[str]) -> None:
    workdir = tmp_path / "work"
    workdir.write_bytes(b"a file, not a folder")
    args = [*command, "--workdir", str(workdir)] if command[0] == "demo" else command
    result = CliRunner().invoke(cli, args, env=_env(workdir))
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and str(workdir) in lines[0], result.output
    assert "Traceback" not in result.output
