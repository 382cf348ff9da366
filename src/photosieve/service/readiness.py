"""Readiness checks behind `/readyz`: can this process do its work right now?

Each check does the real thing and undoes it, because "the database answers SELECT 1" is not
"uploads will succeed" (a read-only database answers every read):

- `database`: an UPDATE in a transaction that is rolled back (fails on a read-only SQLite file,
  a read-only PostgreSQL role or `default_transaction_read_only`), with a short lock wait;
- `image_store`: create, fsync and delete a file in the store's temp folder;
- `model`: a scorer is loaded and names its model version.

Details returned to the caller are short (exception class and first line); the full error,
paths included, goes to the log.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from photosieve.store.db import probe_write
from photosieve.store.images import ImageStore

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


def check_image_store(images: ImageStore) -> CheckResult:
    """Write, fsync and delete a probe file where uploads are staged."""
    probe = images.tmp / f".ready-{secrets.token_hex(8)}"
    try:
        images.tmp.mkdir(parents=True, exist_ok=True)
        with open(probe, "wb") as handle:
            handle.write(b"ready")
            handle.flush()
            os.fsync(handle.fileno())
        probe.unlink()
    except OSError as exc:
        with contextlib.suppress(OSError):
            probe.unlink()
        log.warning("readiness: image store %s is not writable: %s", images.root, exc)
        return CheckResult("image_store", False, f"not writable: {type(exc).__name__}")
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
