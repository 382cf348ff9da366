"""Upload latency and throughput of the moderation service over loopback, next to the bare model.

One run measures, on real benchmark photos (../shared/data/bench, `primary` source):

(a) bare model: `Scorer.score_bytes` on one photo at a time in this process (decode + resize +
    ONNX backbone + head) — the floor any upload request pays;
(b) the service: `create_app` on SQLite (WAL) in a temporary folder, served by uvicorn in a
    separate process (so the load generator does not share its GIL), with 1, 4 and 16
    concurrent clients each posting distinct photos to `POST /v1/uploads` with an API key.

Reported per level: p50 / p99 / mean latency, throughput (uploads/s), the p50 overhead over the
bare model's p50, and throughput as a share of the bare model's single-stream rate (1 / mean).
The bundle is `work/bundle` when the learn stage has produced it, else a small logistic
head fitted here on 64 bench photos; a bundle without a policy gets a bench-only
`DecisionPolicy`. Writes bench/results/service_latency.json and prints a table.

    .venv/bin/python bench/service_latency.py [--requests 96] [--threads 1] [--levels 1 4 16]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import secrets
import socket
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from photosieve.bundle import ModelBundle
from photosieve.config import Workdir
from photosieve.paths import default_workdir, shared_data_dir
from photosieve.policy.bands import DecisionPolicy

RESULTS = Path(__file__).parent / "results" / "service_latency.json"
BENCH_POLICY = DecisionPolicy(approve_below=0.3, remove_at=0.9, evidence={"source": "bench only"})


def bench_photos(n: int, seed: int = 0) -> list[Path]:
    """`n` distinct primary-source benchmark photos (fixed seed), offensive ones included."""
    data = shared_data_dir()
    manifest = None if data is None else data / "bench" / "manifest.csv"
    if manifest is None or not manifest.is_file():
        raise SystemExit("needs ../shared/data/bench (the benchmark photos) beside the checkout")
    df = pd.read_csv(manifest)
    df = df[df["source"] == "primary"].sample(frac=1.0, random_state=seed)
    if len(df) < n:
        raise SystemExit(f"asked for {n} photos, the benchmark has {len(df)} primary ones")
    return [manifest.parent / p for p in df["path"].head(n)]


def tiny_bundle(embedder: Any, seed: int = 1) -> ModelBundle:
    """A logistic head on 64 bench photos (32 offensive): a stand-in when no trained bundle."""
    from photosieve.learn.head import LogisticHead
    from photosieve.vision.preprocess import load_image

    data = shared_data_dir()
    assert data is not None  # bench_photos checked it
    manifest = data / "bench" / "manifest.csv"
    df = pd.read_csv(manifest)
    df = df[df["source"] == "primary"]
    picked = pd.concat(
        [df[df["label"] == lab].sample(32, random_state=seed) for lab in ("offensive", "ok")]
    )
    images = [load_image((manifest.parent / p).read_bytes()) for p in picked["path"]]
    X = embedder.embed_images(images)
    y = (picked["label"] == "offensive").to_numpy().astype(int)
    head = LogisticHead(C=1.0).fit(X, y)
    config = embedder.config
    bundle = ModelBundle(head, backbone_id=config.id, preprocess=config.preprocess)
    bundle.train_config = {"bench": "service_latency tiny head", "photos": 64}
    return bundle


def prepare_bundle(folder: Path, threads: int) -> tuple[Path, str]:
    """Save the bundle the service will load (with a policy) into `folder`; says which one."""
    from photosieve.vision.embed import Embedder

    trained = Workdir.default().bundle
    if (trained / "bundle.json").is_file():
        bundle, origin = ModelBundle.load(trained), f"trained ({trained})"
    else:
        embedder = Embedder(workdir=default_workdir(), threads=threads)
        bundle, origin = tiny_bundle(embedder), "tiny logistic head on 64 bench photos"
    if bundle.policy is None:
        bundle = bundle.with_policy(BENCH_POLICY)
        origin += " + bench-only policy"
    return bundle.save(folder / "bundle"), origin


def load_scorer(bundle_dir: Path | str, threads: int) -> Any:
    """The bundle's `Scorer`, its embedder on the bundle's own backbone with `threads` threads."""
    from photosieve.scoring import Scorer, backbone_for
    from photosieve.vision.embed import Embedder

    bundle = ModelBundle.load(bundle_dir)
    backbone = backbone_for(bundle.backbone_id)
    return Scorer(bundle, Embedder(backbone, workdir=default_workdir(), threads=threads))


def bare_model(bundle_dir: Path, photos: list[Path], threads: int) -> dict[str, Any]:
    """Single-image `Scorer.score_bytes` latency in this process (after one warm-up call)."""
    scorer = load_scorer(bundle_dir, threads)
    blobs = [p.read_bytes() for p in photos]
    scorer.score_bytes(blobs[0])
    times = []
    for blob in blobs:
        started = time.perf_counter()
        scorer.score_bytes(blob)
        times.append(time.perf_counter() - started)
    return summarise(times, len(times), sum(times))


def bench_settings(folder: Path) -> Any:
    """Production-mode settings of a throwaway service in `folder` (SQLite, random secret)."""
    from photosieve.service.config import Settings

    return Settings(
        environment="production",
        secret_key=secrets.token_urlsafe(32),
        workdir=folder,
        database_url=f"sqlite:///{folder / 'service.db'}",
        data_dir=folder / "images",
    )


def serve(tmp: str, bundle_dir: str, port: int, threads: int, keys: Any) -> None:
    """Child process: the real app on SQLite in `tmp`, served by uvicorn on loopback."""
    import uvicorn

    from photosieve.service.app import create_app
    from photosieve.store import accounts

    app = create_app(bench_settings(Path(tmp)), scorer=load_scorer(bundle_dir, threads))
    with app.state.sessions() as session:
        _, key = accounts.create_api_key(session, "bench")
        session.commit()
    keys.put(key)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=96, help="uploads per concurrency level")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime threads (both sides)")
    parser.add_argument("--bare", type=int, default=64, help="photos for the bare-model timing")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    warmup = 4
    photos = bench_photos(warmup + args.requests * len(args.levels) + args.bare)
    blobs = [p.read_bytes() for p in photos]
    console = Console(width=120)
    with tempfile.TemporaryDirectory(prefix="service-bench-") as tmp:
        bundle_dir, origin = prepare_bundle(Path(tmp), args.threads)
        console.print(f"bundle: {origin}")
        bare = bare_model(bundle_dir, photos[-args.bare :], args.threads)
        ctx = mp.get_context("spawn")
        keys = ctx.Queue()
        port = free_port()
        server = ctx.Process(
            target=serve, args=(tmp, str(bundle_dir), port, args.threads, keys), daemon=True
        )
        server.start()
        url = f"http://127.0.0.1:{port}"
        try:
            key = keys.get(timeout=180)
            wait_ready(url, server)
            load_level(url, key, blobs[:warmup], 1)
            levels, offset = [], warmup
            for clients in args.levels:
                chunk = blobs[offset : offset + args.requests]
                offset += args.requests
                console.print(f"{clients} client(s): {len(chunk)} uploads…")
                levels.append(load_level(url, key, chunk, clients))
        finally:
            server.terminate()
            server.join(timeout=10)

    bare_rate = 1000.0 / bare["mean_ms"]
    for level in levels:
        level["p50_over_bare_p50"] = level["p50_ms"] / bare["p50_ms"]
        level["throughput_over_bare_rate"] = level["throughput_per_s"] / bare_rate
    result = {
        "bundle": origin,
        "onnx_threads": args.threads,
        "requests_per_level": args.requests,
        "photo_source": "../shared/data/bench (primary)",
        "database": "SQLite (WAL), temporary folder",
        "server": "uvicorn, 1 worker, separate process; clients: httpx threads, loopback",
        "machine": {
            "cpus": os.cpu_count(),
            "usable_cpus": len(os.sched_getaffinity(0)),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "bare_model": {**bare, "what": "Scorer.score_bytes, one photo at a time, in process"},
        "bare_rate_per_s": bare_rate,
        "service": levels,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))

    table = Table(title=f"Upload latency over loopback ({origin})")
    for column in ["what", "p50 ms", "p99 ms", "mean ms", "uploads/s", "p50 ÷ bare", "rate ÷ bare"]:
        table.add_column(column, justify="left" if column == "what" else "right")
    table.add_row(
        "bare model (score_bytes)",
        f"{bare['p50_ms']:.1f}",
        f"{bare['p99_ms']:.1f}",
        f"{bare['mean_ms']:.1f}",
        f"{bare_rate:.1f}",
        "1.00",
        "1.00",
    )
    for level in levels:
        failed = sum(level["errors"].values())
        table.add_row(
            f"service, {level['clients']} client(s)" + (f" ({failed} errors)" if failed else ""),
            f"{level['p50_ms']:.1f}",
            f"{level['p99_ms']:.1f}",
            f"{level['mean_ms']:.1f}",
            f"{level['throughput_per_s']:.1f}",
            f"{level['p50_over_bare_p50']:.2f}",
            f"{level['throughput_over_bare_rate']:.2f}",
        )
    console.print(table)
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
