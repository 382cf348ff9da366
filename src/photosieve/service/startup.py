"""Start-up checks of the service: refuse, in one line naming the path, what would go wrong later.

- A folder the service writes to (the SQLite database's, the image store's, the workdir) must be
  creatable and writable, and an S3 photo store must take a probe object; otherwise start-up
  fails with `StartupError` naming the place, not a traceback from deep inside SQLite or boto3.
- A missing (or never migrated) database next to an image store that already holds photos is
  refused: migrating would silently create an empty database, and every API key and login would
  then fail with 401 while the photos sit orphaned. The message names both places and the two
  ways out: restore the backup, or `photosieve db upgrade` to create an empty database on
  purpose. A fresh install (no database, no photos) is migrated as before.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from photosieve.service.config import Settings
from photosieve.store.db import current_revision, make_engine
from photosieve.store.photos import PhotoStore, StorageError

RECOVER = (
    "restore the database from a backup, or run `photosieve db upgrade` to create an empty "
    "one on purpose"
)


class StartupError(ValueError):
    """The service must not start; the message is one line a person can act on."""


def ensure_writable(folder: Path, what: str) -> None:
    """Create `folder` if needed and prove it writable with a probe file; StartupError if not."""
    probe = folder / f".photosieve-write-test-{secrets.token_hex(4)}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(probe, "wb") as handle:
            handle.write(b"ok")
            os.fsync(handle.fileno())
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise StartupError(f"cannot write to the {what} {folder}: {reason}") from exc


def sqlite_path(url: str) -> Path | None:
    """The file behind a SQLite URL (None for other databases and in-memory SQLite)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    database = str(parsed.database)
    if database.startswith("file:"):  # URI form: sqlite:///file:/path?mode=ro&uri=true
        database = database[len("file:") :]
    return Path(database)


def _database_missing(url: str, engine: Engine | None) -> bool:
    path = sqlite_path(url)
    if path is not None:
        return not path.exists()  # do not connect: connecting creates the file
    if make_url(url).get_backend_name() == "sqlite":
        return False  # in-memory
    own = engine is None
    engine = engine if engine is not None else make_engine(url)
    try:
        return current_revision(engine) is None
    except SQLAlchemyError:
        return False  # unreachable: the connection error itself is the clearer message
    finally:
        if own:
            engine.dispose()


def check_database(
    settings: Settings, engine: Engine | None = None, images: PhotoStore | None = None
) -> None:
    """StartupError when the database is missing but the image store holds photos."""
    url = settings.resolved_database_url
    images = images if images is not None else settings.photo_store()
    try:
        has_photos = images.has_photos()
    except StorageError as exc:
        raise StartupError(f"cannot read the image store {images.location}: {exc}") from exc
    if not has_photos:
        return
    if _database_missing(url, engine):
        shown = sqlite_path(url) or make_url(url).render_as_string(hide_password=True)
        raise StartupError(
            f"the database {shown} is missing (or empty) but the image store "
            f"{images.location} already holds photos; refusing to start with an empty database "
            f"(every API key and login would fail): {RECOVER}"
        )


def preflight(
    settings: Settings, engine: Engine | None = None, images: PhotoStore | None = None
) -> None:
    """Every start-up check: writable folders and photo store, then no empty database beside
    stored photos. `images` defaults to the store `settings` name."""
    path = sqlite_path(settings.resolved_database_url)
    if path is not None:
        ensure_writable(path.parent, "database folder")
    images = images if images is not None else settings.photo_store()
    if settings.storage_url is None:
        ensure_writable(settings.resolved_data_dir, "image store")
    else:
        try:
            images.check_writable()
        except StorageError as exc:
            raise StartupError(f"cannot write to the image store {images.location}: {exc}") from exc
    check_database(settings, engine, images)
