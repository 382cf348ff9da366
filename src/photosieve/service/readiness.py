"""Readiness checks behind `/readyz`: can this process do its work right now?

Each check does the real thing and undoes it, because "the database answers SELECT 1" is not
"uploads will succeed" (a read-only database answers every read):

- `database`: an UPDATE in a transaction that is rolled back (fails on a read-only SQLite file,
  a read-only PostgreSQL role or `default_transaction_read_only`), with a short lock wait;
- `image_store`: create (fsync) and delete a probe where uploads are staged: a file in the
  folder store's temp folder, an object under the S3 store's staging prefix;
- `model`: a scorer is loaded and names its model version.

Details returned to the caller are short (exception class and first line); the full error,
paths included, goes to the log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from photosieve.store.db import probe_write
from photosieve.store.photos import PhotoStore, StorageError

log = logging.getLogger(__name__)
LOCK_WAIT_MS = 2000


@dataclass(frozen=True)
class CheckResult:
    """One readiness check: whether it passed and a short, safe detail."""

    name: str
    ok: bool
    detail: str


def _short(exc: BaseException) -> str:
    cause = getattr(exc, "orig", None) or exc
    first = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
    return f"{type(cause).__name__}: {first}"[:200]


def check_database(engine: Engine) -> CheckResult:
    """Write to the database in a transaction that is rolled back."""
    try:
        probe_write(engine, lock_wait_ms=LOCK_WAIT_MS)
    except SQLAlchemyError as exc:
        log.warning("readiness: database %s is not writable: %s", engine.url, exc)
        return CheckResult("database", False, f"not writable: {_short(exc)}")
    return CheckResult("database", True, "writable")


def check_image_store(images: PhotoStore) -> CheckResult:
    """Write and delete a probe where uploads are staged (a file, or an S3 object)."""
    try:
        images.check_writable()
    except OSError as exc:
        log.warning("readiness: image store %s is not writable: %s", images.location, exc)
        cause = exc.__cause__ if isinstance(exc, StorageError) and exc.__cause__ else exc
        return CheckResult("image_store", False, f"not writable: {type(cause).__name__}")
    return CheckResult("image_store", True, "writable")


def check_model(scorer: object | None, model_version: str) -> CheckResult:
    """A scorer is loaded (the bundle was read at start-up)."""
    if scorer is None:
        return CheckResult("model", False, "no model loaded")
    return CheckResult("model", True, f"loaded: {model_version}")


def run_checks(checks: list[Callable[[], CheckResult]]) -> list[CheckResult]:
    """Run every check; one that raises counts as failed (never a 500 from the probe)."""
    results = []
    for check in checks:
        try:
            results.append(check())
        except Exception as exc:  # a probe must answer, whatever broke
            log.exception("readiness check failed unexpectedly")
            results.append(CheckResult(getattr(check, "__name__", "check"), False, _short(exc)))
    return results
