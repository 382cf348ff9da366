"""Alembic environment of the photosieve store: runs on the connection `store.db.migrate` passes.

`alembic -c src/photosieve/store/alembic.ini upgrade head` works too (URL from
`PHOTOSIEVE_DATABASE_URL`).
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import Connection

from photosieve.store.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Migrate over the given connection, or open one from the configured URL."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from photosieve.store.db import make_engine

    url = config.get_main_option("sqlalchemy.url") or os.environ.get("PHOTOSIEVE_DATABASE_URL")
    if not url:
        raise ValueError("set PHOTOSIEVE_DATABASE_URL (or sqlalchemy.url) to migrate")
    engine = make_engine(url)
    with engine.begin() as conn:
        _run(conn)
    engine.dispose()


if context.is_offline_mode():
    raise ValueError("offline (SQL script) migrations are not supported; run them online")
run_migrations_online()
