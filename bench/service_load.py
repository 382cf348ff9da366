"""The live-service side of the service benches: a throwaway service (the real app on SQLite
in a temporary folder, uvicorn in a child process) and concurrent upload clients over loopback.

`run_service` starts one, warms it up and runs each concurrency level: per level the upload
latencies (p50 / p99 / mean / max), throughput, errors, the server's CPU per upload and the
mean batch it scored. Used by `service_latency.py` and `hostile_inputs.py`.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import re
import secrets
import socket
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from rich.console import Console

from photosieve.bundle import ModelBundle
from photosieve.paths import default_workdir


def load_scorer(bundle_dir: Path | str, threads: int | None) -> Any:
    """The bundle's `Scorer`, its embedder on the bundle's own backbone with `threads` threads."""
    from photosieve.scoring import Scorer, backbone_for
    from photosieve.vision.embed import Embedder

    bundle = ModelBundle.load(bundle_dir)
    backbone = backbone_for(bundle.backbone_id)
    return Scorer(bundle, Embedder(backbone, workdir=default_workdir(), threads=threads))


def bench_settings(folder: Path, **overrides: Any) -> Any:
    """Production-mode settings of a throwaway service in `folder` (SQLite unless `overrides`
    name a `database_url`; a random secret)."""
    from photosieve.service.config import Settings

    settings: dict[str, Any] = {
        "environment": "production",
        "secret_key": secrets.token_urlsafe(32),
        "workdir": folder,
        "database_url": f"sqlite:///{folder / 'service.db'}",
        "data_dir": folder / "images",
    }
    return Settings(**{**settings, **overrides})


def serve(
    tmp: str, bundle_dir: str, port: int, threads: int | None, keys: Any, overrides: dict[str, Any]
) -> None:
    """Child process: the real app on SQLite in `tmp`, served by uvicorn on loopback."""
    import uvicorn

    from photosieve.service.app import create_app
    from photosieve.store import accounts

    settings = bench_settings(Path(tmp), onnx_threads=threads, **overrides)
    app = create_app(settings, scorer=load_scorer(bundle_dir, threads))
    with app.state.sessions() as session:
        _, key = accounts.create_api_key(session, "bench")
        session.commit()
    keys.put(key)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def serve_workers(
    tmp: str, bundle_dir: str, port: int, workers: int, keys: Any, overrides: dict[str, Any]
) -> None:
    """Child process: `workers` uvicorn worker processes of the app factory (what
    `photosieve serve --workers N` runs), settings from the environment, one onnxruntime
    thread each."""
    import uvicorn

    from photosieve.service.app import APP_FACTORY, prepare
    from photosieve.store import accounts
    from photosieve.store.db import make_engine, make_sessionmaker

    folder = Path(tmp)
    env = {
        "ENVIRONMENT": "production",
        "SECRET_KEY": secrets.token_urlsafe(32),
        "WORKDIR": str(folder),
        "DATABASE_URL": f"sqlite:///{folder / 'service.db'}",
        "DATA_DIR": str(folder / "images"),
        "BUNDLE_PATH": bundle_dir,
        "ONNX_THREADS": "1",
        **{key.upper(): str(value) for key, value in overrides.items()},
    }
    os.environ.update({f"PHOTOSIEVE_{key}": value for key, value in env.items()})
    from photosieve.service.config import Settings

    settings = Settings()
    prepare(settings)
    engine = make_engine(settings.resolved_database_url)
    with make_sessionmaker(engine)() as session:
        _, key = accounts.create_api_key(session, "bench")
        session.commit()
    engine.dispose()
    keys.put(key)
    uvicorn.run(
        APP_FACTORY, factory=True, workers=workers, host="127.0.0.1", port=port,
        log_level="warning", access_log=False,
    )  # fmt: skip


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process and its live descendants have used so far (Linux
    `/proc/<pid>/stat`: uvicorn's worker processes are children of the server process)."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += stats.get(current, (0, 0.0))[1]
        todo.extend(child for child, (parent, _) in stats.items() if parent == current)
    return total


def scoring_counters(url: str) -> dict[str, float]:
    """The service's micro-batching counters from `/metrics` (model calls, images scored)."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    found = re.findall(r"^photosieve_scoring_(batches|images)_total (\S+)$", text, flags=re.M)
    return {name: float(value) for name, value in found}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def summarise(times: list[float], n: int, wall: float) -> dict[str, Any]:
    ms = np.asarray(times) * 1000.0
    return {
        "n": n,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
        "max_ms": float(ms.max()),
        "throughput_per_s": n / wall,
    }


def load_level(url: str, key: str, blobs: list[bytes], clients: int) -> dict[str, Any]:
    """`clients` threads, each with its own connection, post the photos as fast as answered."""
    chunks = [blobs[i::clients] for i in range(clients)]
    decisions: Counter[str] = Counter()
    errors: Counter[int] = Counter()

    def run(chunk: list[bytes], worker: int) -> list[float]:
        times = []
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
            for i, blob in enumerate(chunk):
                started = time.perf_counter()
                response = client.post(
                    "/v1/uploads",
                    files={"image": ("photo.jpg", blob, "image/jpeg")},
                    data={"user_id": f"bench-{worker}-{i}"},
                )
                times.append(time.perf_counter() - started)
                if response.status_code == 201:
                    decisions[response.json()["decision"]] += 1
                else:
                    errors[response.status_code] += 1
        return times

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(run, chunks, range(clients)))
    wall = time.perf_counter() - started
    out = summarise([t for r in results for t in r], len(blobs), wall)
    out.update(clients=clients, decisions=dict(decisions), errors=dict(errors))
    return out


def wait_ready(url: str, process: Any, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not process.is_alive():
            raise SystemExit("the service process died while starting")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit("the service did not become healthy in time")


def run_service(
    tmp: Path,
    bundle_dir: Path,
    threads: int | None,
    overrides: dict[str, Any],
    warmup: list[bytes],
    loads: list[tuple[int, list[bytes]]],
    console: Console,
    workers: int = 1,
) -> list[dict[str, Any]]:
    """Start a service (settings `overrides`) in `tmp`, warm it up, run each (clients, photos).
    With `workers` > 1 it is uvicorn's multi-process server of the app factory; the mean batch
    is then left out (`/metrics` counters are per worker)."""
    tmp.mkdir()
    ctx = mp.get_context("spawn")
    keys = ctx.Queue()
    port = free_port()
    if workers > 1:
        target: Any = serve_workers
        args: tuple[Any, ...] = (str(tmp), str(bundle_dir), port, workers, keys, overrides)
    else:
        target, args = serve, (str(tmp), str(bundle_dir), port, threads, keys, overrides)
    server = ctx.Process(target=target, args=args, daemon=workers == 1)
    server.start()
    pid = server.pid
    assert pid is not None
    url = f"http://127.0.0.1:{port}"
    levels = []
    try:
        key = keys.get(timeout=180)
        wait_ready(url, server)
        load_level(url, key, warmup, max(clients for clients, _ in loads))
        for clients, chunk in loads:
            shown = {k: v for k, v in overrides.items() if k != "database_url"}
            name = f"{workers} workers" if workers > 1 else shown or "batched"
            console.print(f"{name}: {clients} client(s), {len(chunk)} uploads…")
            cpu, before = cpu_seconds(pid), scoring_counters(url)
            level = load_level(url, key, chunk, clients)
            # The server's own CPU per upload: its efficiency, whatever else shares the box.
            used = cpu_seconds(pid) - cpu
            level["server_cpu_ms_per_upload"] = 1000.0 * used / len(chunk)
            after = scoring_counters(url)
            calls = after["batches"] - before["batches"]
            if workers == 1:
                level["model_calls"] = int(calls)
                level["mean_batch"] = (after["images"] - before["images"]) / max(calls, 1.0)
            level["workers"] = workers
            levels.append(level)
    finally:
        server.terminate()
        server.join(timeout=10)
        if server.is_alive():
            server.kill()
    return levels
