"""Every command writes under the workdir it is given (`--workdir` or `PHOTOSIEVE_WORKDIR`),
in the one layout `config.Workdir` names, and nothing under `./work` of the current folder."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from drawing import labelled_folder
from photosieve.cli import app
from photosieve.cli.demo import _wait_for_port
from photosieve.config import Workdir


def _photos(root: Path) -> Path:
    return labelled_folder(root, offensive=12, ok=30, size=(64, 48))


def test_ingest_and_split_default_into_the_env_workdir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    photos = _photos(tmp_path / "photos")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("PHOTOSIEVE_WORKDIR", str(tmp_path / "w"))
    runner = CliRunner()
    layout = Workdir(tmp_path / "w")
    ingested = runner.invoke(app, ["ingest", str(photos)])
    assert ingested.exit_code == 0, ingested.output
    assert layout.ingested.is_file()
    split = runner.invoke(app, ["split", str(layout.ingested), "--fractions", _FRACTIONS])
    assert split.exit_code == 0, split.output
    assert layout.split.is_file() and layout.split.with_suffix(".json").is_file()
    assert not (elsewhere / "work").exists()


def test_workdir_option_wins_over_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    photos = _photos(tmp_path / "photos")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PHOTOSIEVE_WORKDIR", str(tmp_path / "env"))
    result = CliRunner().invoke(app, ["ingest", str(photos), "--workdir", str(tmp_path / "opt")])
    assert result.exit_code == 0, result.output
    assert Workdir(tmp_path / "opt").ingested.is_file()
    assert not (tmp_path / "env").exists() and not (tmp_path / "work").exists()


_FRACTIONS = "train=0.5,train_dev=0.1,validation=0.1,calibration=0.2,test=0.1"


def test_ready_means_the_port_accepts(tmp_path: Path) -> None:
    """The demo prints "ready" only once the service accepts connections."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    listener = (
        "import socket, time; time.sleep(1.0); s = socket.socket(); "
        f"s.bind(('127.0.0.1', {port})); s.listen(); time.sleep(30)"
    )
    server = subprocess.Popen([sys.executable, "-c", listener])
    try:
        started = time.monotonic()
        assert _wait_for_port(server, "127.0.0.1", port)
        assert time.monotonic() - started >= 0.9
    finally:
        server.kill()
        server.wait()
    dead = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    assert not _wait_for_port(dead, "127.0.0.1", port)


def test_service_commands_take_the_workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """user / apikey / client / db act on the --workdir given to them (not ./work)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PHOTOSIEVE_WORKDIR", raising=False)
    runner = CliRunner()
    w = str(tmp_path / "w")
    added = runner.invoke(app, ["user", "--workdir", w, "add", "rita", "--password", "pw-rita-123"])
    assert added.exit_code == 0, added.output
    key = runner.invoke(app, ["apikey", "--workdir", w, "create", "forum-1", "--client", "forum"])
    assert key.exit_code == 0, key.output
    listed = runner.invoke(app, ["user", "--workdir", w, "list"])
    assert "rita" in listed.output
    clients = runner.invoke(app, ["client", "--workdir", w, "list"])
    assert "forum" in clients.output
    upgraded = runner.invoke(app, ["db", "--workdir", w, "upgrade"])
    assert upgraded.exit_code == 0 and "→" in upgraded.output
    assert Workdir(tmp_path / "w").database.is_file()
    assert not (tmp_path / "work").exists()


def test_serve_takes_the_workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`serve --workdir` looks for its bundle (and database) there, not in ./work."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PHOTOSIEVE_WORKDIR", raising=False)
    result = CliRunner().invoke(app, ["serve", "--workdir", str(tmp_path / "w")])
    assert result.exit_code != 0
    assert str(Workdir(tmp_path / "w").bundle) in result.output.replace("\n", "")
    assert not (tmp_path / "work").exists()
