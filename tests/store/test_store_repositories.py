"""The repository functions the service and feedback layers query through, on SQLite and
PostgreSQL: decisions, upload lookups and removal, queue lookups, sign-in log, write probe."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from photosieve.store import accounts, auth, bank, decisions, queue, uploads
from photosieve.store.db import begin_write, make_sessionmaker, migrate, probe_write
from photosieve.store.models import ItemKind, Upload
from upload_rows import new_upload


def _upload(session: Session, i: int, status: str = "removed") -> Upload:
    return uploads.insert(session, new_upload(i, status=status))


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    migrate(engine)
    with make_sessionmaker(engine)() as db:
        begin_write(db)
        yield db


def test_decisions_record_undo_and_standing(session: Session) -> None:
    reviewer = accounts.add_user(session, "rev", "x", "reviewer")
    other = accounts.add_user(session, "other", "x", "reviewer")
    upload = _upload(session, 1)
    item = queue.enqueue(session, upload.id, ItemKind.MODEL_BAND)
    first = decisions.record(
        session, item_id=item.id, upload=upload, label="offensive", reviewer_id=reviewer.id
    )
    assert (first.previous_status, first.previous_reason) == ("removed", "model_band")
    bank.add(session, upload.phash, upload.id, confirmed=True, decision_id=first.id)
    second = decisions.record(
        session, item_id=item.id, upload=upload, label="offensive", reviewer_id=other.id
    )
    assert decisions.get(session, first.id) is first
    assert decisions.latest_remover(session, upload.id) == other.id
    assert decisions.latest_banker(session, upload.id) == reviewer.id
    assert decisions.count_standing_others(session, upload.id, first.id) == 1
    assert decisions.mark_undone(session, second.id)
    assert not decisions.mark_undone(session, second.id)  # only once
    assert decisions.count_standing_others(session, upload.id, first.id) == 0
    assert decisions.latest_remover(session, upload.id) == reviewer.id
    rows = decisions.standing_with_items(session)
    assert [(d.id, i.id, u.id) for d, i, u in rows] == [(first.id, item.id, upload.id)]


def test_upload_and_queue_lookups_and_forgetting(session: Session) -> None:
    upload = _upload(session, 2)
    kept = _upload(session, 3)
    band = queue.enqueue(session, upload.id, ItemKind.MODEL_BAND)
    appeal = queue.enqueue(session, upload.id, ItemKind.APPEAL)
    bank.add(session, upload.phash, upload.id, confirmed=False)
    assert uploads.exists_with_sha256(session, upload.sha256)
    assert not uploads.exists_with_sha256(session, "f" * 64)
    assert queue.upload_id_of(session, appeal.id) == upload.id
    assert queue.upload_id_of(session, 10**6) is None
    assert queue.get_item(session, band.id) is band
    assert queue.first_kind_for(session, upload.id) == ItemKind.MODEL_BAND.value
    assert queue.first_kind_for(session, kept.id) is None
    upload_id, sha, band_id, appeal_id = upload.id, upload.sha256, band.id, appeal.id
    queue.drop_open_appeals(session, upload_id, keep_item_id=band_id)
    session.expire_all()
    assert queue.get_item(session, appeal_id) is None
    assert queue.get_item(session, band_id) is not None
    uploads.delete_with_dependents(session, upload_id)
    session.expire_all()
    assert not uploads.exists_with_sha256(session, sha)
    assert queue.get_item(session, band_id) is None
    assert bank.count_active(session) == 0
    assert uploads.exists_with_sha256(session, kept.sha256)


def test_sign_in_log_and_users(session: Session) -> None:
    bob = accounts.add_user(session, "bob", "x", "reviewer")
    accounts.add_user(session, "alice", "x", "admin")
    auth.lock_sign_ins(session)  # a no-op on SQLite, an advisory lock on PostgreSQL
    now = dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)
    attempt = auth.record_event(
        session, auth.EventKind.LOGIN_FAILED, now=now, username="bob", client_addr="a"
    )
    assert auth.last_logins(session) == {}
    auth.mark_login_ok(session, attempt.id, bob.id)
    last = auth.last_logins(session)
    assert list(last) == [bob.id]
    assert last[bob.id].replace(tzinfo=dt.UTC) == now
    assert accounts.usernames(session) == ["alice", "bob"]
    assert [u.username for u in accounts.list_users(session)] == ["bob", "alice"]


def test_probe_write_passes_on_a_writable_database(engine: Engine) -> None:
    migrate(engine)
    probe_write(engine, lock_wait_ms=500)
