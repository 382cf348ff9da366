"""The claim reads the open-items index on PostgreSQL instead of sorting the whole queue.

A plan on a nearly empty table proves nothing (a sequential scan is cheapest there), so the
queue holds 20,000 pending items, analysed, with the planner free to choose; then the same
query without the index must fall back to sorting — the test can tell the two apart.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, text

from photosieve.store import queue
from photosieve.store.db import make_engine, migrate
from photosieve.store.models import ReviewItem, utcnow
from postgres_db import pg_available, pg_database

pytestmark = pytest.mark.postgres
PENDING = 20_000


@pytest.fixture
def pg_queue() -> Iterator[Engine]:
    if not pg_available():
        pytest.skip("PostgreSQL is not reachable at 127.0.0.1:5432")
    with pg_database() as url:
        engine = make_engine(url)
        migrate(engine)
        start = dt.datetime(2026, 1, 1)
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO uploads (id, user_id, sha256, phash, image_format, width, "
                    "height, size_bytes, score, model_version, model_decision, status, reason, "
                    "final, created_at, updated_at) "
                    "SELECT lpad(to_hex(g), 32, '0'), 'u', lpad(to_hex(g), 64, '0'), "
                    "lpad(to_hex(g), 16, '0'), 'jpeg', 1, 1, 1, 0.5, 'v', 'review', "
                    "'pending_review', 'model_band', false, :t, :t "
                    "FROM generate_series(1, :n) AS g"
                ),
                {"n": PENDING, "t": start},
            )
            conn.execute(
                text(
                    "INSERT INTO review_items (upload_id, kind, status, created_at) "
                    "SELECT lpad(to_hex(g), 32, '0'), 'model_band', "
                    "CASE WHEN g % 10 = 0 THEN 'decided' ELSE 'pending' END, "
                    ":t + g * interval '1 second' FROM generate_series(1, :n) AS g"
                ),
                {"n": PENDING, "t": start},
            )
            conn.execute(text("ANALYZE review_items"))
        try:
            yield engine
        finally:
            engine.dispose()


def _plan(engine: Engine) -> dict[str, Any]:
    """The planner's JSON plan of the claim's candidate query (nothing is executed)."""
    compiled = queue.candidates_query(utcnow(), reviewer_id=1, wanted=20).compile(
        dialect=engine.dialect
    )
    params = {
        k: v.astimezone(dt.UTC).replace(tzinfo=None) if isinstance(v, dt.datetime) else v
        for k, v in compiled.params.items()
    }
    with engine.connect() as conn:
        plan: dict[str, Any] = conn.exec_driver_sql(
            f"EXPLAIN (FORMAT JSON) {compiled}", params
        ).scalar_one()[0]["Plan"]
    return plan


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def test_claim_reads_the_open_items_index_in_order(pg_queue: Engine) -> None:
    nodes = list(_nodes(_plan(pg_queue)))
    scans = [n for n in nodes if n.get("Relation Name") == ReviewItem.__tablename__]
    assert [(n["Node Type"], n.get("Index Name")) for n in scans] == [
        ("Index Scan", "ix_review_items_open")
    ]
    assert not any("Sort" in n["Node Type"] for n in nodes)  # no sort of the whole queue
    with pg_queue.connect() as conn:
        definition = conn.scalar(
            text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_review_items_open'")
        )
    assert "(created_at, id)" in definition and "'pending'" in definition
    assert "'claimed'" in definition and "'decided'" not in definition


def test_without_the_index_the_claim_sorts_the_queue(pg_queue: Engine) -> None:
    with pg_queue.begin() as conn:
        conn.execute(text("DROP INDEX ix_review_items_open"))
    nodes = list(_nodes(_plan(pg_queue)))
    assert any("Sort" in n["Node Type"] for n in nodes)
    assert not any(n.get("Index Name") == "ix_review_items_open" for n in nodes)
