"""How every command opens the service's database: one place for the settings of a workdir, the
start-up checks, the migrations and the session.

`open_database()` honours `--workdir` (the sub-apps `user`, `apikey`, `client` and `db` take it
before their command: `photosieve user --workdir DIR add rita`) and `PHOTOSIEVE_WORKDIR`, refuses
in one line (no traceback) an unwritable folder or an empty database beside stored photos
(`service.startup`), migrates to the newest schema and yields a session.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from sqlalchemy.orm import Session

from photosieve.service.config import Settings
from photosieve.service.startup import StartupError, preflight
from photosieve.store.db import begin_write, make_engine, make_sessionmaker, migrate

WORKDIR_HELP = "Working folder: database, photos, secret key (PHOTOSIEVE_WORKDIR) [./work]."
# The --workdir given to the current sub-app (one command runs per process; reset every call).
_chosen: dict[str, Path | None] = {"workdir": None}


def workdir_callback(
    workdir: Path | None = typer.Option(None, "--workdir", help=WORKDIR_HELP),
) -> None:
    """Remember the sub-app's --workdir for the command that follows."""
    _chosen["workdir"] = workdir


def settings_for(workdir: Path | None = None) -> Settings:
    """Service settings for `workdir`, the sub-app's --workdir, or the environment's."""
    root = workdir if workdir is not None else _chosen["workdir"]
    return Settings() if root is None else Settings(workdir=root.resolve())


def fail_startup(exc: Exception) -> typer.Exit:
    """Print a start-up refusal as one line on stderr (no traceback); exit status 1."""
    typer.echo(f"photosieve: {exc}", err=True)
    return typer.Exit(1)


def check_startup(settings: Settings) -> None:
    """The service's start-up checks, as a one-line refusal."""
    try:
        preflight(settings)  # never create an empty database beside stored photos
    except StartupError as exc:
        raise fail_startup(exc) from exc


@contextmanager
def open_database(workdir: Path | None = None, *, write: bool = False) -> Iterator[Session]:
    """A session on the workdir's database, checked and migrated; disposed afterwards.

    `write`: the session opens as a write transaction (`db.begin_write`), as every command
    that writes must: the service may be writing to the same SQLite file meanwhile."""
    settings = settings_for(workdir)
    check_startup(settings)
    engine = make_engine(settings.resolved_database_url)
    try:
        migrate(engine)
        with make_sessionmaker(engine)() as session:
            if write:
                begin_write(session)
            yield session
    finally:
        engine.dispose()
