"""Several processes migrating one fresh database at once (`uvicorn --workers N` starting up):
each waits for the one holding the migration lock, then finds the schema current — no
"table already exists", no duplicate `alembic_version` row (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import subprocess
import sys

from sqlalchemy import Engine, text

from photosieve.store.db import current_revision, make_engine

MIGRATE = "import sys; from photosieve.store.db import make_engine, migrate; " \
    "migrate(make_engine(sys.argv[1]))"  # fmt: skip
PROCESSES = 3


def test_concurrent_migrations_wait_for_each_other(engine: Engine) -> None:
    url = engine.url.render_as_string(hide_password=False)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", MIGRATE, url], env=env, stderr=subprocess.PIPE, text=True
        )
        for _ in range(PROCESSES)
    ]
    failures = [p.stderr.read() for p in procs if p.wait(120) != 0 and p.stderr is not None]
    assert failures == []
    check = make_engine(url)
    try:
        assert current_revision(check) is not None
        with check.connect() as connection:
            rows = connection.execute(text("SELECT count(*) FROM alembic_version")).scalar_one()
        assert rows == 1
    finally:
        check.dispose()
