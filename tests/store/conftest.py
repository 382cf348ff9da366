"""Fixtures of the store tests: a migrated engine on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from photosieve.store.db import make_engine
from postgres_db import pg_available, pg_database


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A fresh, empty database (not migrated)."""
    if request.param == "sqlite":
        eng = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
        yield eng
        eng.dispose()
        return
    if not pg_available():
        pytest.skip("PostgreSQL is not reachable at 127.0.0.1:5432")
    with pg_database() as url:
        eng = make_engine(url)
        try:
            yield eng
        finally:
            eng.dispose()
