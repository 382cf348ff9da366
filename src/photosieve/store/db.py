"""Engines, sessions and schema migrations of the store (SQLite WAL by default, or PostgreSQL).

Nothing here runs at import: `make_engine` builds an engine for a URL, `migrate` brings its
schema to the newest Alembic revision shipped in this package (one process at a time), and
`make_sessionmaker` hands out sessions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for `url`; SQLite files get WAL, a busy timeout and foreign keys.

    On SQLite, transactions opened through `begin_write` start with `BEGIN IMMEDIATE`, so one
    that reads and then writes (a claim, a decision) holds the write lock from its start instead
    of failing with "database is locked" when another writer got in between; other transactions
    are deferred (WAL readers never block the writer).
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        kwargs.setdefault("pool_pre_ping", True)
        return create_engine(url, **kwargs)
    if parsed.database and parsed.database != ":memory:":
        database = parsed.database
        if parsed.query.get("uri") == "true" and database.startswith("file:"):
            database = database[len("file:") :].split("?", 1)[0]  # sqlite:///file:…?mode=ro
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    connect_args = {"check_same_thread": False, "timeout": 30.0, **kwargs.pop("connect_args", {})}
    engine = create_engine(url, connect_args=connect_args, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (below)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        write = connection.get_execution_options().get(_WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


_WRITE_OPTION = "photosieve_write"


def begin_write(session: Session) -> None:
    """Open the session's transaction as a write transaction (SQLite: `BEGIN IMMEDIATE`).

    Call first thing, outside any transaction, in every unit of work that writes.
    """
    if session.in_transaction():
        raise RuntimeError("begin_write must open the transaction; commit or roll back first")
    session.connection(execution_options={_WRITE_OPTION: True})


def probe_write(engine: Engine, *, lock_wait_ms: int) -> None:
    """Write to the database in a transaction that is rolled back; SQLAlchemyError if it refuses.

    The write (`UPDATE alembic_version` to itself) fails on a read-only SQLite file, a read-only
    PostgreSQL role or `default_transaction_read_only`, which a `SELECT 1` would not notice. A
    lock held by another writer is waited for at most `lock_wait_ms` (the readiness probe must
    answer sooner than the 30 s uploads wait).
    """
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as connection:
        raw = connection.connection.driver_connection if sqlite else None
        if raw is not None:
            raw.execute(f"PRAGMA busy_timeout={lock_wait_ms}")  # outside any transaction
        try:
            with connection.begin() as transaction:
                if not sqlite:
                    connection.execute(text(f"SET LOCAL lock_timeout = {lock_wait_ms}"))
                    connection.execute(text(f"SET LOCAL statement_timeout = {lock_wait_ms}"))
                connection.execute(text("UPDATE alembic_version SET version_num = version_num"))
                transaction.rollback()
        finally:
            if raw is not None:
                raw.execute("PRAGMA busy_timeout=30000")


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions bound to `engine` that keep loaded objects usable after commit."""
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(engine: Engine | None = None) -> Any:
    """An Alembic `Config` pointing at the migrations shipped in this package."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if engine is not None:
        # ConfigParser interpolates "%": escape URL-encoded characters (passwords, `file%3A`).
        url = engine.url.render_as_string(hide_password=False).replace("%", "%%")
        cfg.set_main_option("sqlalchemy.url", url)
    return cfg


# Any constant both migrating processes agree on: the key of PostgreSQL's advisory lock.
MIGRATION_LOCK_KEY = 0x70686F746F736965  # "photosie"


def migrate(engine: Engine, revision: str = "head") -> None:
    """Upgrade the database behind `engine` to `revision` (idempotent).

    Safe when several processes start at once (`uvicorn --workers N`): the upgrade runs in one
    transaction holding a lock — PostgreSQL's transaction-scoped advisory lock, SQLite's write
    lock (`BEGIN IMMEDIATE`) — so the others wait, then find the schema current.
    """
    cfg = alembic_config(engine)
    with engine.connect() as connection:
        connection.execution_options(**{_WRITE_OPTION: True})
        with connection.begin():
            if connection.dialect.name == "postgresql":
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
                )
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, revision)


def current_revision(engine: Engine) -> str | None:
    """The Alembic revision the database is at (None before the first migration)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
