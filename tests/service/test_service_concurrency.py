"""Several reviewers over real HTTP (uvicorn on loopback) drain a few hundred items in parallel.

Each reviewer is a thread with its own HTTP client and session; every item must be decided
exactly once and none lost. Runs on PostgreSQL (SKIP LOCKED) and on SQLite (BEGIN IMMEDIATE).
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import httpx
from sqlalchemy import func, select

from live_server import LiveServer
from photosieve.store import queue, uploads
from photosieve.store.models import ItemKind, ItemStatus, ReviewDecision, ReviewItem
from service_harness import Service, sign_in
from upload_rows import new_upload

N_ITEMS = 300
N_REVIEWERS = 6


def _fill_queue(service: Service, n: int) -> None:
    """Queue `n` uploads straight through the store (scoring is not what is under test)."""
    with service.sessions() as session:
        for i in range(n):
            upload = uploads.insert(
                session,
                new_upload(
                    i,
                    user_id=f"user{i}",
                    width=64,
                    height=64,
                    size_bytes=1000,
                    model_version="tiny",
                ),
            )
            queue.enqueue(
                session, upload.id, ItemKind.APPEAL if i % 7 == 0 else ItemKind.MODEL_BAND
            )
        session.commit()


def _reviewer(url: str, name: str, decided: list[int], errors: list[str]) -> None:
    with httpx.Client(base_url=url, timeout=30) as client:
        sign_in(client, name)
        while True:
            claimed = client.post("/v1/review/claim", json={"limit": 10})
            if claimed.status_code != 200:
                errors.append(f"{name} claim {claimed.status_code} {claimed.text}")
                return
            items = claimed.json()["items"]
            if not items:
                return
            for item in items:
                label = "offensive" if item["id"] % 3 == 0 else "ok"
                response = client.post(
                    f"/v1/review/items/{item['id']}/decision", json={"label": label}
                )
                if response.status_code == 200:
                    decided.append(item["id"])
                else:
                    errors.append(f"{name} decide {response.status_code} {response.text}")


def test_parallel_reviewers_decide_every_item_exactly_once(service: Service) -> None:
    _fill_queue(service, N_ITEMS)
    names = [f"reviewer{i}" for i in range(N_REVIEWERS)]
    for name in names:
        service.add_user(name)
    results: dict[str, list[int]] = {name: [] for name in names}
    errors: list[str] = []
    with LiveServer(service.app) as server:
        threads = [
            threading.Thread(target=_reviewer, args=(server.url, name, results[name], errors))
            for name in names
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    assert errors == []
    all_decided = [item for ids in results.values() for item in ids]
    assert len(all_decided) == N_ITEMS
    assert len(set(all_decided)) == N_ITEMS  # nobody decided an item someone else decided
    assert sum(1 for ids in results.values() if ids) >= 2  # the work really was shared
    with service.sessions() as session:
        per_item: Counter[Any] = Counter(session.scalars(select(ReviewDecision.item_id)).all())
        assert len(per_item) == N_ITEMS and set(per_item.values()) == {1}
        open_items = (
            select(func.count())
            .select_from(ReviewItem)
            .where(ReviewItem.status != ItemStatus.DECIDED.value)
        )
        assert session.scalar(open_items) == 0
