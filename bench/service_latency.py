"""Upload latency and throughput of the moderation service over loopback, next to the bare model.

One run measures, on real benchmark photos (../shared/data/bench, `primary` source):

(a) bare model: `Scorer.score_bytes` on one photo at a time in this process (decode + resize +
    ONNX backbone + head) — the floor any upload request pays;
(b) batched model: `Scorer.score_images` on batches of 32 of the service's photos, decoded
    beforehand as the service decodes them (resize + ONNX backbone + head) — the rate the
    service's micro-batching can approach;
(c) the service: `create_app` on SQLite (WAL) in a temporary folder, served by uvicorn in a
    separate process (so the load generator does not share its GIL), with 1, 4 and 16
    concurrent clients each posting distinct photos to `POST /v1/uploads` with an API key over
    a keep-alive connection (`--generator raw`: requests built before the clock starts and sent
    over plain sockets, ~0.3 ms of client CPU an upload; `httpx`: an httpx client a thread,
    ~2.8 ms — the generator shares the 2 cores with the server, so its CPU is reported too);
(d) the same service with `batch_max=1` (every upload its own model call, as before
    micro-batching) at `--baseline-levels` (default: 1 client), for the latency a lone upload
    paid without batching;
(e) `--workers` uvicorn worker processes of the app factory (what `photosieve serve --workers N`
    runs; one onnxruntime thread each) at `--worker-levels` (default: 16 clients), checked
    against the machine's batched rate: (b) with onnxruntime on every core.

Reported per level: p50 / p99 / mean latency, throughput (uploads/s), throughput as a share of
the batched model's rate (b) and of the bare single-stream rate (1 / mean of (a)), and the
server's CPU per upload next to the batched model's CPU per photo (efficiency figures that
other load on a shared box does not move much), and the mean batch the service scored (images
per model call, from its `/metrics`). The issue
13 targets are checked: at 16 clients throughput ≥ 0.7 × (b) and p99 ≤ 300 ms; at 1 client the
p50 no worse than the unbatched service's (d). onnxruntime uses `--threads` intra-op threads on
every side (default: the service's own default, half the usable cores). The bundle is `work/bundle`
when the learn stage has produced it, else a small logistic head fitted here on 64 bench
photos; a bundle without a policy gets a bench-only `DecisionPolicy`. Writes
bench/results/service_latency.json and prints a table.

    .venv/bin/python bench/service_latency.py [--requests 96] [--threads N] [--levels 1 4 16]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

# The tests' throwaway PostgreSQL databases (`--postgres`), one helper for tests and benches.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from photosieve.bundle import ModelBundle
from photosieve.config import Workdir
from photosieve.paths import default_workdir, shared_data_dir
from photosieve.policy.bands import DecisionPolicy
from photosieve.service.config import default_onnx_threads
from postgres_db import pg_database
from service_load import load_scorer, run_service, summarise

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


def prepare_bundle(folder: Path, threads: int | None) -> tuple[Path, str]:
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


def bare_model(bundle_dir: Path, photos: list[Path], threads: int | None) -> dict[str, Any]:
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


def batched_model(
    bundle_dir: Path, photos: list[Path], threads: int | None, batch: int = 32
) -> dict[str, Any]:
    """`Scorer.score_images` rate on batches of `batch` photos decoded beforehand as the service
    decodes uploads (reduced for the model's input size), after one warm-up batch."""
    from photosieve.vision.decode import decode

    scorer = load_scorer(bundle_dir, threads)
    size = scorer.embedder.config.preprocess.decode_size
    images = [decode(p.read_bytes(), draft_size=size).image for p in photos]
    scorer.score_images(images[:batch])
    times = []
    cpu = time.process_time()
    for start in range(0, len(images) - batch + 1, batch):
        started = time.perf_counter()
        scorer.score_images(images[start : start + batch])
        times.append(time.perf_counter() - started)
    cpu = time.process_time() - cpu
    scored = batch * len(times)
    return {
        "images": scored,
        "batch_size": batch,
        "seconds": sum(times),
        "rate_per_s": scored / sum(times),
        "per_image_ms": 1000.0 * sum(times) / scored,
        "cpu_ms_per_image": 1000.0 * cpu / scored,
        "what": f"Scorer.score_images on batches of {batch} pre-decoded photos, in process",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=96, help="uploads per concurrency level")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument(
        "--baseline-levels", type=int, nargs="*", default=[1],
        help="levels also run without batching (batch_max=1)",
    )  # fmt: skip
    parser.add_argument(
        "--threads", type=int, default=None,
        help="onnxruntime intra-op threads, every side [default: the service's, half the cores]",
    )  # fmt: skip
    parser.add_argument(
        "--worker-levels", type=int, nargs="*", default=[16],
        help="levels also run on `--workers` uvicorn processes (one onnxruntime thread each)",
    )  # fmt: skip
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument(
        "--postgres", action="store_true",
        help="each service on a throwaway database on the local PostgreSQL instead of SQLite",
    )  # fmt: skip
    parser.add_argument("--bare", type=int, default=64, help="photos for the bare-model timing")
    parser.add_argument("--batched", type=int, default=256, help="photos for the batched rate")
    parser.add_argument(
        "--generator", choices=("raw", "httpx"), default="raw",
        help="the load generator: prepared requests over sockets, or an httpx client a thread",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]  # the box is shared: other jobs' load moves every figure
    threads = args.threads or default_onnx_threads()
    warmup = 2 * max(args.levels)
    runs = len(args.levels) + len(args.baseline_levels) + len(args.worker_levels)
    photos = bench_photos(warmup + args.requests * runs + args.bare)
    blobs = [p.read_bytes() for p in photos]
    console = Console(width=120)
    offset = warmup

    def next_chunk() -> list[bytes]:
        nonlocal offset
        offset += args.requests
        return blobs[offset - args.requests : offset]

    with tempfile.TemporaryDirectory(prefix="service-bench-") as tmp:
        bundle_dir, origin = prepare_bundle(Path(tmp), threads)
        console.print(f"bundle: {origin}")
        bare = bare_model(bundle_dir, photos[-args.bare :], threads)
        batched = batched_model(bundle_dir, photos[warmup : warmup + args.batched], threads)
        # The machine's batched rate: the same, onnxruntime on every core.
        cores = len(os.sched_getaffinity(0))
        machine = batched_model(bundle_dir, photos[warmup : warmup + args.batched], cores)
        loads = [(clients, next_chunk()) for clients in args.levels]

        def service(
            name: str, overrides: dict[str, Any], loads: list[tuple[int, list[bytes]]],
            threads: int, workers: int = 1,
        ) -> list[dict[str, Any]]:  # fmt: skip
            with contextlib.ExitStack() as stack:
                if args.postgres:
                    url = stack.enter_context(pg_database())
                    overrides = {**overrides, "database_url": url}
                return run_service(
                    Path(tmp) / name, bundle_dir, threads, overrides, blobs[:warmup], loads,
                    console, workers=workers, generator=args.generator,
                )  # fmt: skip

        levels = service("batched", {}, loads, threads)
        baseline = []
        if args.baseline_levels:
            loads = [(clients, next_chunk()) for clients in args.baseline_levels]
            baseline = service("unbatched", {"batch_max": 1}, loads, threads)

        several = []
        if args.worker_levels and args.workers > 1:
            loads = [(clients, next_chunk()) for clients in args.worker_levels]
            several = service("workers", {}, loads, 1, workers=args.workers)

    bare_rate = 1000.0 / bare["mean_ms"]
    batched_rate = batched["rate_per_s"]
    machine_rate = machine["rate_per_s"]
    for level in levels + baseline + several:
        level["throughput_over_machine_batched_rate"] = level["throughput_per_s"] / machine_rate
        level["throughput_over_batched_rate"] = level["throughput_per_s"] / batched_rate
        level["throughput_over_bare_rate"] = level["throughput_per_s"] / bare_rate
        level["p50_over_bare_p50"] = level["p50_ms"] / bare["p50_ms"]
    result = {
        "bundle": origin,
        "onnx_threads": threads,
        "requests_per_level": args.requests,
        "photo_source": "../shared/data/bench (primary)",
        "database": "PostgreSQL (local, throwaway databases)"
        if args.postgres
        else "SQLite (WAL), temporary folder",
        "server": "uvicorn, 1 worker, separate process; clients: threads, loopback",
        "generator": args.generator,
        "machine": {
            "cpus": os.cpu_count(),
            "usable_cpus": len(os.sched_getaffinity(0)),
            "loadavg_1m_before": load_before,
            "loadavg_1m_after": os.getloadavg()[0],
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "bare_model": {**bare, "what": "Scorer.score_bytes, one photo at a time, in process"},
        "bare_rate_per_s": bare_rate,
        "batched_model": batched,
        "batched_rate_per_s": batched_rate,
        "machine_batched_model": machine,
        "machine_batched_rate_per_s": machine_rate,
        "service": levels,
        "service_unbatched": baseline,
        "service_workers": several,
        "targets": targets(levels, baseline, batched_rate, several),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print_table(console, origin, bare, batched, levels, baseline, several, machine)
    for name, check in result["targets"].items():
        console.print(f"target {name}: {check}")
    console.print(f"wrote {args.out}")


def targets(
    levels: list[dict[str, Any]],
    baseline: list[dict[str, Any]],
    batched_rate: float,
    several: list[dict[str, Any]],
) -> dict[str, Any]:
    """The issue-13 checks on the levels that were run (16 clients, 1 client); with several
    workers, the 16-client checks again against the machine's batched rate (every core)."""
    out: dict[str, Any] = {}
    many = next((lv for lv in several if lv["clients"] == 16), None)
    if many is not None:
        out["16 clients, several workers: throughput >= 0.7 x machine batched rate"] = {
            "workers": many["workers"],
            "ratio": round(many["throughput_over_machine_batched_rate"], 3),
            "ratio_to_one_thread_batched_rate": round(many["throughput_over_batched_rate"], 3),
            "met": many["throughput_over_machine_batched_rate"] >= 0.7,
        }
        out["16 clients, several workers: p99 <= 300 ms"] = {
            "p99_ms": round(many["p99_ms"], 1),
            "met": many["p99_ms"] <= 300.0,
        }
    busy = next((lv for lv in levels if lv["clients"] == 16), None)
    if busy is not None:
        out["16 clients: throughput >= 0.7 x batched rate"] = {
            "ratio": round(busy["throughput_over_batched_rate"], 3),
            "met": busy["throughput_over_batched_rate"] >= 0.7,
        }
        out["16 clients: p99 <= 300 ms"] = {
            "p99_ms": round(busy["p99_ms"], 1),
            "met": busy["p99_ms"] <= 300.0,
        }
    alone = next((lv for lv in levels if lv["clients"] == 1), None)
    before = next((lv for lv in baseline if lv["clients"] == 1), None)
    if alone is not None and before is not None:
        out["1 client: p50 no worse than unbatched"] = {
            "batched_p50_ms": round(alone["p50_ms"], 1),
            "unbatched_p50_ms": round(before["p50_ms"], 1),
            "met": alone["p50_ms"] <= before["p50_ms"] * 1.05,  # within run-to-run noise
        }
    return out


def print_table(
    console: Console,
    origin: str,
    bare: dict[str, Any],
    batched: dict[str, Any],
    levels: list[dict[str, Any]],
    baseline: list[dict[str, Any]],
    several: list[dict[str, Any]],
    machine: dict[str, Any],
) -> None:
    bare_rate = 1000.0 / bare["mean_ms"]
    table = Table(title=f"Upload latency over loopback ({origin})")
    columns = ["what", "p50 ms", "p99 ms", "mean ms", "per s", "÷ batched", "÷ bare", "CPU ms",
               "client CPU", "batch"]  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column == "what" else "right")
    table.add_row(
        "bare model (score_bytes, 1 at a time)", f"{bare['p50_ms']:.1f}", f"{bare['p99_ms']:.1f}",
        f"{bare['mean_ms']:.1f}", f"{bare_rate:.1f}",
        f"{bare_rate / batched['rate_per_s']:.2f}", "1.00", "", "", "1",
    )  # fmt: skip
    table.add_row(
        f"batched model (score_images × {batched['batch_size']})", "", "",
        f"{batched['per_image_ms']:.1f}", f"{batched['rate_per_s']:.1f}", "1.00",
        f"{batched['rate_per_s'] / bare_rate:.2f}", f"{batched['cpu_ms_per_image']:.1f}", "",
        str(batched["batch_size"]),
    )  # fmt: skip
    table.add_row(
        f"batched model, every core (× {machine['batch_size']})", "", "",
        f"{machine['per_image_ms']:.1f}", f"{machine['rate_per_s']:.1f}",
        f"{machine['rate_per_s'] / batched['rate_per_s']:.2f}",
        f"{machine['rate_per_s'] / bare_rate:.2f}", f"{machine['cpu_ms_per_image']:.1f}", "",
        str(machine["batch_size"]),
    )  # fmt: skip
    groups = (("service", levels), ("service, batch_max=1", baseline),
              (f"service, {several[0]['workers'] if several else 0} workers", several))  # fmt: skip
    for name, rows in groups:
        for level in rows:
            failed = sum(level["errors"].values())
            table.add_row(
                f"{name}, {level['clients']} client(s)" + (f" ({failed} errors)" if failed else ""),
                f"{level['p50_ms']:.1f}",
                f"{level['p99_ms']:.1f}",
                f"{level['mean_ms']:.1f}",
                f"{level['throughput_per_s']:.1f}",
                f"{level['throughput_over_batched_rate']:.2f}",
                f"{level['throughput_over_bare_rate']:.2f}",
                f"{level['server_cpu_ms_per_upload']:.1f}",
                f"{level['client_cpu_ms_per_upload']:.1f}",
                f"{level['mean_batch']:.1f}" if "mean_batch" in level else "",
            )
    console.print(table)


if __name__ == "__main__":
    main()
