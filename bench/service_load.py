"""The live-service side of the service benches: a throwaway service (the real app on SQLite
in a temporary folder, uvicorn in a child process) and concurrent upload clients over loopback.

`run_service` starts one, warms it up and runs each concurrency level: per level the upload
latencies (p50 / p99 / mean / max), throughput, errors, the server's CPU per upload and the
mean batch it scored. Used by `service_latency.py` and `hostile_inputs.py`.
"""

from __future__ import annotations

import json
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


def multipart_request(port: int, key: str, blob: bytes, user_id: str) -> bytes:
    """A complete `POST /v1/uploads` HTTP/1.1 request (multipart photo + user_id), built once."""
    boundary = secrets.token_hex(16)
    body = b"".join([
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"user_id\"\r\n\r\n".encode(),
        user_id.encode(), b"\r\n",
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; "
        f"filename=\"photo.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n".encode(),
        blob, f"\r\n--{boundary}--\r\n".encode(),
    ])  # fmt: skip
    head = (
        f"POST /v1/uploads HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {key}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class RawConnection:
    """One keep-alive HTTP/1.1 connection that sends prepared requests and reads the answers:
    a load generator that costs the shared cores a fraction of what an HTTP client library
    does (the server's parsing is unchanged)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def exchange(self, request: bytes) -> tuple[int, bytes]:
        """Send `request`; the response's status code and body."""
        self.sock.sendall(request)
        while b"\r\n\r\n" not in self.buffer:
            self._read()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(self.buffer) < length:
            self._read()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, body

    def _read(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the server closed the connection")
        self.buffer += data

    def close(self) -> None:
        self.sock.close()


def load_level(
    url: str, key: str, blobs: list[bytes], clients: int, *, generator: str = "raw"
) -> dict[str, Any]:
    """`clients` threads, each with its own keep-alive connection, post the photos as fast as
    answered. `generator` "raw": prepared requests over plain sockets (built before timing);
    "httpx": an httpx client per thread (as before; several times the client CPU). The
    generator's own CPU per upload is reported (`client_cpu_ms_per_upload`): it shares the
    cores with the server."""
    chunks = [blobs[i::clients] for i in range(clients)]
    decisions: Counter[str] = Counter()
    errors: Counter[int] = Counter()
    port = int(url.rsplit(":", 1)[1])

    def note(status: int, body: bytes) -> None:
        if status == 201:
            decisions[json.loads(body)["decision"]] += 1
        else:
            errors[status] += 1

    def run_raw(requests: list[bytes], _worker: int) -> list[float]:
        times = []
        connection = RawConnection(port)
        try:
            for request in requests:
                started = time.perf_counter()
                status, body = connection.exchange(request)
                times.append(time.perf_counter() - started)
                note(status, body)
        finally:
            connection.close()
        return times

    def run_httpx(chunk: list[bytes], worker: int) -> list[float]:
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
                note(response.status_code, response.content)
        return times

    work: list[Any] = chunks
    if generator == "raw":  # the requests are built before the clock starts
        work = [
            [multipart_request(port, key, blob, f"bench-{w}-{i}") for i, blob in enumerate(chunk)]
            for w, chunk in enumerate(chunks)
        ]
    run = {"raw": run_raw, "httpx": run_httpx}[generator]
    cpu = time.process_time()
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(run, work, range(clients)))
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu
    out = summarise([t for r in results for t in r], len(blobs), wall)
    out.update(clients=clients, decisions=dict(decisions), errors=dict(errors))
    out.update(generator=generator, client_cpu_ms_per_upload=1000.0 * cpu / len(blobs))
    return out


def wait_ready(url: str, process: Any, seconds: float = 120.0, path: str = "/healthz") -> None:
    """Wait until the service answers `path` with 200 (connections are refused while the app's
    lifespan warms it up); SystemExit if its process dies or `seconds` pass."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not process.is_alive():
            raise SystemExit("the service process died while starting")
        try:
            if httpx.get(f"{url}{path}", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the service did not answer {path} in time")


def run_service(
    tmp: Path,
    bundle_dir: Path,
    threads: int | None,
    overrides: dict[str, Any],
    warmup: list[bytes],
    loads: list[tuple[int, list[bytes]]],
    console: Console,
    workers: int = 1,
    generator: str = "raw",
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
        load_level(url, key, warmup, max(clients for clients, _ in loads), generator=generator)
        for clients, chunk in loads:
            shown = {k: v for k, v in overrides.items() if k != "database_url"}
            name = f"{workers} workers" if workers > 1 else shown or "batched"
            console.print(f"{name}: {clients} client(s), {len(chunk)} uploads…")
            cpu, before = cpu_seconds(pid), scoring_counters(url)
            level = load_level(url, key, chunk, clients, generator=generator)
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
