"""Two uvicorn worker processes (`uvicorn --workers 2 --factory`) on one fresh PostgreSQL
database and one workdir: they start together (migrations and the generated secret key must not
race), take concurrent uploads on fresh connections with no error and no duplicate, make one row
for one Idempotency-Key raced through both, and accept each other's session cookies.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from photosieve.service.app import APP_FACTORY
from photosieve.store import accounts
from photosieve.store.db import make_engine, make_sessionmaker
from photosieve.store.models import Upload
from photosieve.vision.onnx import onnx_path
from postgres_db import pg_database
from service_harness import PASSWORD, REVIEW_ALL, drawn_photo, password_hash

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
WORKERS = 2
UPLOADS = 12


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def two_workers(
    tmp_path: Path, tiny_bundle: Any, embedder: Any, postgres_ok: bool
) -> Iterator[tuple[str, str]]:
    """(service URL, database URL) of 2 workers started at once on a fresh database."""
    if not postgres_ok:
        pytest.skip("PostgreSQL is not reachable at 127.0.0.1:5432")
    bundle = tiny_bundle.with_policy(REVIEW_ALL).save(tmp_path / "bundle")
    export = onnx_path(embedder.backbone, tmp_path)  # the cached ONNX export, not re-exported
    export.parent.mkdir(parents=True)
    shutil.copyfile(onnx_path(embedder.backbone, embedder.workdir), export)
    port = _free_port()
    with pg_database() as db_url:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PHOTOSIEVE_")},
            "PYTHONPATH": os.pathsep.join(sys.path),
            "PHOTOSIEVE_ENVIRONMENT": "test",
            "PHOTOSIEVE_WORKDIR": str(tmp_path),  # secret key generated here, by both
            "PHOTOSIEVE_DATABASE_URL": db_url,
            "PHOTOSIEVE_BUNDLE_PATH": str(bundle),
            "PHOTOSIEVE_ONNX_THREADS": "1",
        }
        log = tmp_path / "uvicorn.log"
        with open(log, "w") as out:
            server = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "--factory", APP_FACTORY, "--host",
                 "127.0.0.1", "--port", str(port), "--workers", str(WORKERS)],
                env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            deadline = time.monotonic() + 180
            while log.read_text().count("Application startup complete") < WORKERS:
                assert server.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
            yield f"http://127.0.0.1:{port}", db_url
        finally:
            server.terminate()
            server.wait(30)
    assert "Traceback" not in log.read_text(), log.read_text()


def _post(url: str, key: str, photo: bytes, user: str, idempotency: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {key}", "Connection": "close"}  # a new connection
    if idempotency:
        headers["Idempotency-Key"] = idempotency
    return httpx.post(
        f"{url}/v1/uploads", headers=headers, timeout=60,
        files={"image": ("a.jpg", photo, "image/jpeg")}, data={"user_id": user},
    )  # fmt: skip


def _uploads_served(metrics: str) -> int:
    return sum(int(float(n)) for n in re.findall(r"^photosieve_uploads_total\{.*\} (\S+)$",
                                                  metrics, flags=re.M))  # fmt: skip


def test_two_workers_share_one_postgres(two_workers: tuple[str, str]) -> None:
    url, db_url = two_workers
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    with sessions() as session:
        _, key = accounts.create_api_key(session, "forum")
        accounts.add_user(session, "rita", password_hash(), "reviewer")
        session.commit()
    photos = [drawn_photo(600 + i, shape=("rectangle", "circle")[i % 2]) for i in range(UPLOADS)]
    retried = drawn_photo(700)
    with ThreadPoolExecutor(8) as pool:
        fresh = list(pool.map(lambda i: _post(url, key, photos[i], f"u{i}"), range(UPLOADS)))
        raced = list(pool.map(lambda _: _post(url, key, retried, "r", "same-key"), range(4)))
    assert [r.status_code for r in fresh] == [201] * UPLOADS, [r.text for r in fresh]
    assert sorted(r.status_code for r in raced) == [200, 200, 200, 201], [r.text for r in raced]
    assert len({r.json()["id"] for r in fresh}) == UPLOADS
    assert len({r.json()["id"] for r in raced}) == 1
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Upload)) == UPLOADS + 1
    engine.dispose()

    # Per-process counters: scraped over fresh connections they add up to every upload, which
    # workers served them (the kernel hands connections to whichever worker accepts first).
    served = {_uploads_served(httpx.get(f"{url}/metrics", headers={"Connection": "close"}).text)
              for _ in range(20)}  # fmt: skip
    assert all(0 <= n <= UPLOADS + 1 for n in served)
    if len(served) == WORKERS:
        assert sum(served) == UPLOADS + 1

    # One secret key for both: a cookie signed by one worker is accepted on fresh connections.
    with httpx.Client(base_url=url, timeout=30) as client:
        signed_in = client.post("/v1/auth/login", json={"username": "rita", "password": PASSWORD})
        assert signed_in.status_code == 200, signed_in.text
        cookie = client.cookies.get("photosieve_session")
    assert cookie
    for _ in range(10):
        me = httpx.get(f"{url}/v1/auth/me", cookies={"photosieve_session": cookie},
                       headers={"Connection": "close"}, timeout=30)  # fmt: skip
        assert me.status_code == 200, me.text
