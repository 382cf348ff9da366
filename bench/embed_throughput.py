"""Embedding throughput: end-to-end `embed_files` against the hardware limit, in one run.

(a) raw: onnxruntime running the exported backbone on random uint8 batches of 32 — what this
    machine can do for this model at best;
(b) end-to-end: `photosieve.vision.embed.embed_files` on real photos from ../shared/data/bench
    with a fresh, empty embedding cache (hash + decode + resize + infer + write);
(c) decode only, to see where time goes: 1 thread, N threads, N processes.

(a) and (b) are measured in alternating rounds (the machine is shared, so load drifts) and the
ratio reported is median(b) / median(a). Writes bench/results/embed_throughput.json.

    .venv/bin/python bench/embed_throughput.py [--photos 640] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd

from photosieve.paths import shared_data_dir
from photosieve.vision.embed import Embedder, embed_files
from photosieve.vision.onnx import available_cores, export_onnx
from photosieve.vision.preprocess import PreprocessConfig, load_for_model

RESULTS = Path(__file__).parent / "results" / "embed_throughput.json"
BATCH = 32


def raw_throughput(embedder: Embedder, batches: int) -> float:
    rng = np.random.default_rng(0)
    size = embedder.config.preprocess.input_size
    x = rng.integers(0, 256, size=(BATCH, size, size, 3), dtype=np.uint8)
    embedder.embed_arrays(x)  # warm-up
    started = time.perf_counter()
    for _ in range(batches):
        embedder.embed_arrays(x)
    return batches * BATCH / (time.perf_counter() - started)


def end_to_end(embedder: Embedder, paths: list[Path], onnx_file: Path) -> dict[str, float]:
    workdir = Path(tempfile.mkdtemp(prefix="embed-bench-"))
    try:
        # Fresh, empty embedding cache; the export itself is a one-off and not timed.
        (workdir / "onnx").mkdir()
        shutil.copy(onnx_file, workdir / "onnx" / onnx_file.name)
        stats: dict[str, float] = {}
        started = time.perf_counter()
        vectors = embed_files(
            paths, workdir=workdir, batch_size=BATCH, progress=False, embedder=embedder, stats=stats
        )
        seconds = time.perf_counter() - started
        if stats["computed"] != len(paths) or not np.isfinite(vectors).all():
            raise RuntimeError(f"end-to-end run did not embed every photo: {stats}")
        return {"images_per_s": len(paths) / seconds, "seconds": seconds}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _decode(path: Path) -> int:
    return int(load_for_model(path, PreprocessConfig()).shape[0])


def decode_throughput(paths: list[Path], workers: int, kind: str) -> float:
    started = time.perf_counter()
    if kind == "serial":
        for p in paths:
            _decode(p)
    else:
        pool_type = ThreadPoolExecutor if kind == "threads" else ProcessPoolExecutor
        with pool_type(workers) as pool:
            list(pool.map(_decode, paths, chunksize=16))
    return len(paths) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=int, default=640)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    data = shared_data_dir()
    if data is None or not (data / "bench" / "manifest.csv").is_file():
        raise SystemExit("benchmark photos ../shared/data/bench are not beside the checkout")
    manifest = pd.read_csv(data / "bench" / "manifest.csv")
    sample = manifest.sample(n=min(args.photos, len(manifest)), random_state=0)
    paths = [(data / "bench" / p).resolve() for p in sample["path"]]

    work = Path(tempfile.mkdtemp(prefix="embed-bench-onnx-"))
    try:
        onnx_file = export_onnx(workdir=work)
        embedder = Embedder(workdir=work)
        raw_batches = max(1, len(paths) // BATCH)
        raw: list[float] = []
        e2e: list[float] = []
        for round_no in range(args.rounds):
            raw.append(raw_throughput(embedder, raw_batches))
            e2e.append(end_to_end(embedder, paths, onnx_file)["images_per_s"])
            print(f"round {round_no + 1}: raw {raw[-1]:.1f} img/s, end-to-end {e2e[-1]:.1f} img/s")
        cores = available_cores()
        decode = {
            "serial": decode_throughput(paths, 1, "serial"),
            f"threads_{cores}": decode_throughput(paths, cores, "threads"),
            f"processes_{cores}": decode_throughput(paths, cores, "processes"),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)

    raw_median, e2e_median = statistics.median(raw), statistics.median(e2e)
    result = {
        "benchmark": "embed_throughput",
        "backbone": embedder.config.id,
        "batch_size": BATCH,
        "photos": len(paths),
        "rounds": args.rounds,
        "raw_onnxruntime_images_per_s": round(raw_median, 2),
        "end_to_end_images_per_s": round(e2e_median, 2),
        "ratio_end_to_end_to_raw": round(e2e_median / raw_median, 4),
        "target_ratio": 0.85,
        "raw_runs": [round(v, 2) for v in raw],
        "end_to_end_runs": [round(v, 2) for v in e2e],
        "round_ratios": [round(e / r, 4) for e, r in zip(e2e, raw, strict=True)],
        "decode_only_images_per_s": {k: round(v, 1) for k, v in decode.items()},
        "machine": {
            "cores": cores,
            "cpu": _cpu_name(),
            "loadavg_1m_at_end": round(os.getloadavg()[0], 2),
            "python": platform.python_version(),
            "onnxruntime": ort.__version__,
            "intra_op_threads": embedder.threads,
        },
        "note": "shared machine: other jobs may have run; see per-round figures and loadavg",
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


if __name__ == "__main__":
    main()
