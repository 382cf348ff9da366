"""A command that writes opens its transaction as a writer (`open_database(write=True)`).

The service may be writing to the same SQLite file while an admin runs `photosieve apikey
create`: a deferred transaction that reads first and writes second then fails with "database is
locked" when the service commits in between. A writer holds the lock from its first statement.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from photosieve.cli.database import open_database, settings_for


def _try_to_write(database: str) -> str:
    """Another process's writer, waiting at most 50 ms for the lock: 'ok' or SQLite's error."""
    other = sqlite3.connect(database, timeout=0.05, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        return "ok"
    except sqlite3.OperationalError as exc:
        return str(exc)
    finally:
        other.close()


@pytest.mark.parametrize("write", [True, False])
def test_a_writing_command_holds_the_lock_from_its_first_statement(
    tmp_path: Path, write: bool
) -> None:
    database = make_url(settings_for(tmp_path).resolved_database_url).database
    assert database is not None
    with open_database(tmp_path, write=write) as session:
        session.execute(text("SELECT 1"))  # a command's first read
        outcome = _try_to_write(database)
        session.rollback()
    assert outcome == ("database is locked" if write else "ok")
