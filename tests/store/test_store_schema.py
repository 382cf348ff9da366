"""Migrations, the bank and the queue at the repository level, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect

from photosieve.store import accounts, bank, queue, uploads
from photosieve.store.db import alembic_config, current_revision, make_sessionmaker, migrate
from photosieve.store.models import Base, ItemKind, Role
from upload_rows import new_upload


def _new_upload(i: int, phash: str = "0" * 16) -> uploads.NewUpload:
    return new_upload(i, phash=phash)


def _downgrade_to_base(engine: Engine) -> None:
    from alembic import command

    cfg = alembic_config(engine)
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, "base")


def _head() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def test_migrations_match_the_models_and_are_idempotent(engine: Engine) -> None:
    assert current_revision(engine) is None
    migrate(engine)
    migrate(engine)  # a second start-up changes nothing
    assert current_revision(engine) == _head()
    assert {
        "uploads",
        "review_items",
        "decisions",
        "known_bad_hashes",
        "users",
        "api_keys",
        "clients",
        "sessions",
        "auth_events",
    } <= set(inspect(engine).get_table_names())
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
    _downgrade_to_base(engine)
    assert "uploads" not in inspect(engine).get_table_names()
    migrate(engine)
    assert current_revision(engine) == _head()


def test_bank_prefers_confirmed_then_nearest(engine: Engine) -> None:
    migrate(engine)
    sessions = make_sessionmaker(engine)
    with sessions() as session:
        a = uploads.insert(session, _new_upload(1))
        b = uploads.insert(session, _new_upload(2))
        bank.add(session, "0000000000000000", a.id, confirmed=False)
        bank.add(session, "0000000000000007", b.id, confirmed=True)  # 3 bits away
        session.commit()
        best = bank.nearest(session, "0000000000000001", max_distance=4)
        assert best is not None and best.source_upload_id == b.id and best.distance == 2
        assert bank.nearest(session, "0000000000000001", max_distance=1) is not None
        assert bank.nearest(session, "ffffffffffffffff", max_distance=10) is None
        assert bank.hamming("00ff", "0f0f") == 8


def test_claim_is_oldest_first_and_exclusive(engine: Engine) -> None:
    migrate(engine)
    sessions = make_sessionmaker(engine)
    with sessions() as session:
        r1 = accounts.add_user(session, "r1", "hash", Role.REVIEWER.value)
        r2 = accounts.add_user(session, "r2", "hash", Role.REVIEWER.value)
        ids = [
            queue.enqueue(
                session, uploads.insert(session, _new_upload(i)).id, ItemKind.MODEL_BAND
            ).id
            for i in range(5)
        ]
        session.commit()
    ttl = dt.timedelta(minutes=5)
    with sessions() as session:
        got1 = [q.item.id for q in queue.claim(session, r1.id, 3, ttl)]
    with sessions() as session:
        got2 = [q.item.id for q in queue.claim(session, r2.id, 3, ttl)]
    assert got1 == ids[:3] and got2 == ids[3:]
    with sessions() as session, pytest.raises(queue.ConflictError):
        queue.mark_decided(session, ids[0], r2.id)
    with sessions() as session:
        assert queue.depth(session)["model_band"] == 5
        with pytest.raises(ValueError, match="at least 1"):
            queue.claim(session, r1.id, 0, ttl)


def test_accounts(engine: Engine) -> None:
    migrate(engine)
    sessions = make_sessionmaker(engine)
    with sessions() as session:
        accounts.add_user(session, "ada", "hash", "admin")
        with pytest.raises(ValueError, match="already exists"):
            accounts.add_user(session, "ada", "hash", "admin")
        with pytest.raises(ValueError, match="unknown role"):
            accounts.add_user(session, "bob", "hash", "boss")
        row, key = accounts.create_api_key(session, "forum")
        session.commit()
        assert key.startswith(accounts.API_KEY_PREFIX) and row.key_hash != key
        assert accounts.find_api_key(session, key) is not None
        assert accounts.find_api_key(session, key + "x") is None
