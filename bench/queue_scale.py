"""Claim latency of the review queue on PostgreSQL at 10k, 100k and 1M pending items.

For each size a throwaway database (created and dropped here, on the local PostgreSQL at
127.0.0.1:5432) is migrated to the newest schema and filled in two `INSERT … SELECT
generate_series` statements with that many uploads and their pending review items (oldest first
by `created_at`), then `VACUUM ANALYZE`d. Then, with the real `store.queue.claim`:

- sequential: `--claims` claims of `--batch` items, one after another, rotating over 8 reviewers;
- concurrent: 4 threads (one reviewer and one connection each) claim `--claims` batches in all.

After each timed claim the reviewer "decides" what it got and as many new items arrive (one
untimed statement), so every claim takes fresh items from the head of the queue instead of
renewing its own, the queue keeps its size, and decided rows pile up behind it as in
production. Each concurrent run also checks that no item went to two reviewers. The candidate
query's plan is recorded with `EXPLAIN (ANALYZE, BUFFERS)` (in a transaction rolled back).

The peer, in the same run on the same rows: the candidate query without the index (it is dropped
at the end), i.e. the query as it ran before migration 0008. Both are timed server-side
(`Execution Time` of `EXPLAIN ANALYZE`: 100 runs with the index, 5 without).

Reported per size: p50 / p99 / mean claim latency (ms), sequential and concurrent, the plans,
whether the claim reads an index, and the query times with and without it. The verdict: claim
p99 at the largest size ≤ 2× its value at the smallest (sequential and concurrent). Writes
bench/results/queue_scale.json and prints a table.

    nice -n 10 .venv/bin/python bench/queue_scale.py [--sizes 10000 100000 1000000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

# The tests' throwaway PostgreSQL databases: one helper for tests and benches.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from photosieve.store import queue
from photosieve.store.db import make_engine, make_sessionmaker, migrate
from photosieve.store.models import utcnow
from postgres_db import pg_database

RESULTS = Path(__file__).parent / "results" / "queue_scale.json"
REVIEWERS = 8
THREADS = 4
TTL = dt.timedelta(minutes=10)

FILL_UPLOADS = """
INSERT INTO uploads (id, user_id, sha256, phash, image_format, width, height, size_bytes,
                     score, model_version, model_decision, status, reason, final,
                     created_at, updated_at)
SELECT lpad(to_hex(g), 32, '0'), 'u' || (g % 50000), lpad(to_hex(g), 64, '0'),
       lpad(to_hex(g), 16, '0'), 'jpeg', 256, 256, 20000, 0.5, 'bench', 'review',
       'pending_review', 'model_band', false,
       :start + g * interval '1 second', :start + g * interval '1 second'
FROM generate_series(1, :n) AS g
"""
FILL_ITEMS = """
INSERT INTO review_items (upload_id, kind, status, created_at)
SELECT lpad(to_hex(g), 32, '0'), 'model_band', 'pending', :start + g * interval '1 second'
FROM generate_series(1, :n) AS g
"""

# The timestamps are naive UTC, as the store keeps them; new items sort after every filled one.
DECIDE_AND_REFILL = """
WITH done AS (
  UPDATE review_items SET status = 'decided', decided_at = now() AT TIME ZONE 'utc',
                          claim_expires_at = NULL
  WHERE status = 'claimed' AND claimed_by = :reviewer RETURNING id
), arrived AS (
  INSERT INTO uploads (id, user_id, sha256, phash, image_format, width, height, size_bytes,
                       score, model_version, model_decision, status, reason, final,
                       created_at, updated_at)
  SELECT md5(random()::text || g), 'late', md5(g::text) || md5(random()::text), '0', 'jpeg',
         256, 256, 20000, 0.5, 'bench', 'review', 'pending_review', 'model_band', false,
         clock_timestamp() AT TIME ZONE 'utc', clock_timestamp() AT TIME ZONE 'utc'
  FROM generate_series(1, (SELECT count(*) FROM done)) AS g
  RETURNING id, created_at
)
INSERT INTO review_items (upload_id, kind, status, created_at)
SELECT id, 'model_band', 'pending', created_at FROM arrived
"""


def fill(engine: Engine, n: int) -> tuple[list[int], float]:
    """`n` pending items (and uploads) plus the reviewers; returns reviewer ids and seconds."""
    started = time.perf_counter()
    start = dt.datetime(2026, 1, 1)  # naive UTC, as the store keeps it
    with engine.begin() as conn:
        conn.execute(text(FILL_UPLOADS), {"start": start, "n": n})
        conn.execute(text(FILL_ITEMS), {"start": start, "n": n})
        ids = conn.execute(
            text(
                "INSERT INTO users (username, password_hash, role, active, created_at) "
                "SELECT 'reviewer' || g, 'x', 'reviewer', true, now() "
                "FROM generate_series(1, :r) AS g RETURNING id"
            ),
            {"r": REVIEWERS},
        ).scalars()
        reviewers = list(ids)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    return reviewers, time.perf_counter() - started


def explain(engine: Engine, reviewer_id: int, wanted: int) -> list[str]:
    """EXPLAIN (ANALYZE, BUFFERS) of the claim's candidate query (rolled back)."""
    stmt = queue.candidates_query(utcnow(), reviewer_id, wanted)
    compiled = stmt.compile(dialect=engine.dialect)
    params = {
        key: value.astimezone(dt.UTC).replace(tzinfo=None)
        if isinstance(value, dt.datetime)
        else value
        for key, value in compiled.params.items()
    }
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(f"EXPLAIN (ANALYZE, BUFFERS) {compiled}", params).all()
        conn.rollback()
    return [str(row[0]) for row in rows]


def query_times(engine: Engine, reviewer_id: int, wanted: int, repeats: int) -> list[float]:
    """Server-side execution time (ms) of the candidate query, `repeats` times (rolled back)."""
    times = []
    for _ in range(repeats):
        line = next(row for row in explain(engine, reviewer_id, wanted) if "Execution Time" in row)
        times.append(float(line.split(":")[1].split()[0]))
    return times


def decide_and_refill(session: Session, reviewer_id: int) -> None:
    """Untimed: the reviewer decides everything it holds, and as many new items arrive at the
    tail, so the queue keeps its size through the run."""
    session.execute(text(DECIDE_AND_REFILL), {"reviewer": reviewer_id})
    session.commit()


def claim_loop(
    engine: Engine, reviewers: list[int], claims: int, batch: int, got: list[int] | None = None
) -> list[float]:
    """Claim `claims` batches rotating over `reviewers`; latency of each claim in ms."""
    sessions = make_sessionmaker(engine)
    latencies = []
    with sessions() as session:
        for i in range(claims):
            reviewer = reviewers[i % len(reviewers)]
            started = time.perf_counter()
            items = queue.claim(session, reviewer, batch, TTL)
            latencies.append((time.perf_counter() - started) * 1000)
            if len(items) != batch:
                raise RuntimeError(f"claim returned {len(items)} items, wanted {batch}")
            if got is not None:
                got.extend(q.item.id for q in items)
            decide_and_refill(session, reviewer)
    return latencies


def concurrent(engine: Engine, reviewers: list[int], claims: int, batch: int) -> list[float]:
    """`THREADS` claimers at once (one reviewer each); checks no item is handed out twice."""
    results: list[list[float]] = [[] for _ in range(THREADS)]
    got: list[list[int]] = [[] for _ in range(THREADS)]
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            results[k] = claim_loop(engine, [reviewers[k]], claims // THREADS, batch, got[k])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    handed = [i for g in got for i in g]
    if len(handed) != len(set(handed)):
        raise RuntimeError("an item was handed to two reviewers")
    return [ms for r in results for ms in r]


def summary(latencies: list[float]) -> dict[str, float]:
    arr = np.asarray(latencies)
    return {
        "n": len(arr),
        "p50_ms": round(float(np.percentile(arr, 50)), 3),
        "p99_ms": round(float(np.percentile(arr, 99)), 3),
        "mean_ms": round(float(arr.mean()), 3),
        "max_ms": round(float(arr.max()), 3),
    }


def run_size(n: int, claims: int, batch: int) -> dict[str, Any]:
    with pg_database() as url:
        engine = make_engine(url, pool_size=THREADS + 1)
        try:
            migrate(engine)
            reviewers, fill_s = fill(engine, n)
            claim_loop(engine, reviewers, 20, batch)  # warm the caches and the plan
            sequential = claim_loop(engine, reviewers, claims, batch)
            parallel = concurrent(engine, reviewers, claims, batch)
            plan = explain(engine, reviewers[0], batch)
            query = query_times(engine, reviewers[0], batch, 100)
            # The peer, same data: the query as it ran before migration 0008 (no open index).
            with engine.begin() as conn:
                conn.execute(text("DROP INDEX ix_review_items_open"))
            plan_without = explain(engine, reviewers[0], batch)
            query_without = query_times(engine, reviewers[0], batch, 5)
            with engine.connect() as conn:
                version = conn.scalar(text("SHOW server_version"))
                open_after = conn.scalar(
                    text("SELECT count(*) FROM review_items WHERE status <> 'decided'")
                )
                decided_after = conn.scalar(
                    text("SELECT count(*) FROM review_items WHERE status = 'decided'")
                )
        finally:
            engine.dispose()
    return {
        "pending": n,
        "fill_seconds": round(fill_s, 1),
        "sequential": summary(sequential),
        "concurrent": summary(parallel),
        "open_after": open_after,
        "decided_after": decided_after,
        "candidate_query": summary(query),
        "candidate_query_without_index": summary(query_without),
        "plan": plan,
        "plan_without_index": plan_without,
        "index_scan": any("Index Scan" in line or "Index Only Scan" in line for line in plan),
        "sorts": any("Sort Key" in line for line in plan),
        "sorts_without_index": any("Sort Key" in line for line in plan_without),
        "postgres": version,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--claims", type=int, default=500)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    console = Console()
    sizes: list[dict[str, Any]] = []
    for n in args.sizes:
        console.print(f"[bold]{n:,} pending items[/]")
        sizes.append(run_size(n, args.claims, args.batch))
        console.print("\n".join(sizes[-1]["plan"]))
    first, last = sizes[0], sizes[-1]
    ratios = {
        mode: round(last[mode]["p99_ms"] / first[mode]["p99_ms"], 3)
        for mode in ("sequential", "concurrent")
    }
    result = {
        "machine": f"{platform.node()} ({platform.processor() or platform.machine()})",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "claims_per_size": args.claims,
        "batch": args.batch,
        "threads": THREADS,
        "sizes": sizes,
        "p99_ratio_largest_over_smallest": ratios,
        "target": "claim p99 at the largest size <= 2x its value at the smallest",
        "passed": all(r <= 2.0 for r in ratios.values()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    table = Table(title=f"claim latency, batch of {args.batch} (ms)")
    columns = ("pending", "seq p50", "seq p99", "4× p50", "4× p99", "query", "no index", "fill s")
    for column in columns:
        table.add_column(column, justify="right")
    for row in sizes:
        table.add_row(
            f"{row['pending']:,}",
            f"{row['sequential']['p50_ms']:.2f}",
            f"{row['sequential']['p99_ms']:.2f}",
            f"{row['concurrent']['p50_ms']:.2f}",
            f"{row['concurrent']['p99_ms']:.2f}",
            f"{row['candidate_query']['p50_ms']:.2f}",
            f"{row['candidate_query_without_index']['p50_ms']:.1f}",
            f"{row['fill_seconds']:.0f}",
        )
    console.print(table)
    console.print(f"p99 ratio {ratios} → {'PASS' if result['passed'] else 'FAIL'} ({args.out})")


if __name__ == "__main__":
    main()
