"""Migration 0003_tenants and the client repository, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import IntegrityError

from photosieve.store import accounts, uploads
from photosieve.store.db import make_sessionmaker, migrate
from photosieve.store.models import ApiKey, Client, Upload
from upload_rows import new_upload


def _new_upload(i: int, client_id: int | None, key: str | None) -> uploads.NewUpload:
    return new_upload(i, phash="0" * 16, client_id=client_id, idempotency_key=key)


def test_existing_keys_and_uploads_move_to_the_default_client(engine: Engine) -> None:
    migrate(engine, "0001")
    now = dt.datetime(2026, 1, 1)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO api_keys (id, name, key_hash, prefix, created_at) "
                "VALUES (1, 'old', :hash, 'psk_old', :now)"
            ),
            {"hash": accounts.hash_api_key("psk_old-key"), "now": now},
        )
        conn.execute(
            text(
                "INSERT INTO uploads (id, user_id, api_key_id, sha256, phash, image_format, width,"
                " height, size_bytes, score, model_version, model_decision, status, reason, final,"
                " created_at, updated_at) VALUES ('old-upload', 'u', 1, :sha, :phash, 'jpeg', 1,"
                " 1, 1, 0.1, 'v', 'approve', 'approved', 'model_band', false, :now, :now)"
            ),
            {"sha": "a" * 64, "phash": "0" * 16, "now": now},
        )
    migrate(engine)
    with make_sessionmaker(engine)() as session:
        default = accounts.get_client(session, accounts.DEFAULT_CLIENT)
        assert default is not None and default.active
        key = accounts.find_api_key(session, "psk_old-key")
        assert key is not None and key.client_id == default.id
        upload = uploads.get_for_client(session, "old-upload", default.id)
        assert upload is not None and upload.client_id == default.id


def test_clients_keys_and_the_idempotency_index(engine: Engine) -> None:
    migrate(engine)
    sessions = make_sessionmaker(engine)
    with sessions() as session:
        row, key = accounts.create_api_key(session, "forum-1", client="forum")
        _, other = accounts.create_api_key(session, "blog")
        with pytest.raises(ValueError, match="printable"):
            accounts.create_api_key(session, "bad\x00name")
        session.commit()
        forum = accounts.get_client(session, "forum")
        blog = accounts.get_client(session, "blog")
        assert forum is not None and blog is not None and row.client_id == forum.id
        assert [c.name for c in accounts.list_clients(session)] == ["blog", "default", "forum"]
        assert [k.name for k, _ in accounts.list_api_keys(session)] == ["blog", "forum-1"]
        first = uploads.insert(session, _new_upload(1, forum.id, "k1"))
        uploads.insert(session, _new_upload(2, blog.id, "k1"))  # same key, other client
        uploads.insert(session, _new_upload(3, forum.id, None))
        uploads.insert(session, _new_upload(4, forum.id, None))  # no key: never a conflict
        session.commit()
        assert uploads.get_for_client(session, first.id, blog.id) is None
        assert uploads.get_for_client(session, first.id, None) is None
        assert uploads.get(session, "a\x00b") is None  # never reaches the database
        found = uploads.find_by_idempotency_key(session, forum.id, "k1")
        assert found is not None and found.id == first.id
        assert accounts.find_api_key(session, key) is not None
        assert accounts.find_api_key(session, other) is not None


def test_second_row_with_the_same_client_and_key_is_refused(engine: Engine) -> None:
    migrate(engine)
    with make_sessionmaker(engine)() as session:
        client = accounts.ensure_client(session, "forum")
        uploads.insert(session, _new_upload(1, client.id, "k1"))
        session.commit()
        with pytest.raises(IntegrityError):
            uploads.insert(session, _new_upload(2, client.id, "k1"))
        session.rollback()
        with pytest.raises(ValueError, match="no client"):
            accounts.set_client_active(session, "nobody", False)
        accounts.set_client_active(session, "forum", False)
        session.commit()
        assert session.scalar(select(Client.active).where(Client.name == "forum")) is False
        assert session.scalar(select(ApiKey)) is None
        assert session.scalar(select(Upload.client_id)) == client.id
