"""Backlog scoring throughput: the raw onnxruntime limit, `--engine local` and `--engine ray`.

    .venv/bin/python bench/batch_throughput.py [--photos 2000] [--out ...]

In one run, on the same bench photos and the same bundle (the trained one in the workdir, else a
tiny logistic head on the same backbone — the head costs nothing next to the backbone):

- **limit**: the photos decoded and resized beforehand (untimed), then only onnxruntime, batches
  of 32, in the better of two layouts: one session on every core, or one single-thread session
  per core in parallel processes (the layout both engines use) — the most any engine could
  reach on this machine;
- **local**: `score_backlog(engine="local")` end to end: listing, decoding in worker processes,
  onnxruntime, Parquet parts and the final file;
- **ray**: the same on Ray Data (local Ray with this machine's cores, started before timing;
  actor start-up is inside the time).

The box is shared and noisy, so every measurement is repeated in `--rounds` back-to-back rounds
and the medians are reported (each round's ratio uses that round's limit). Reported as photos/s
and as ratios to the limit (targets: local ≥ 0.85, Ray ≥ 0.75). Writes
bench/results/batch_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from photosieve.batch.decode import decode_for_model
from photosieve.vision.runtime import available_cores

if TYPE_CHECKING:
    from photosieve.vision.embed import Embedder

# Spawned workers (the engine's and the limit's) re-import this script as their main module: the
# heavy imports (torch with the bundle code) sit inside the functions that need them, so a worker
# pays for what the engine loads, not for this script (`photosieve score`'s workers re-import
# the CLI, ~1.3 s; bench/README).
sys.path.insert(0, str(Path(__file__).parent))

OUT = Path(__file__).parent / "results" / "batch_throughput.json"


def _decoded_stack(embedder: Embedder, photos: list[Path]) -> np.ndarray:
    cfg = embedder.config.preprocess
    decoded = [decode_for_model(str(p), cfg) for p in photos]
    return np.stack([f for d in decoded if not isinstance(d, str) for f in d])


def _timed_inference(embedder: Embedder, stack: np.ndarray, batch: int) -> float:
    """Seconds of onnxruntime over `stack` in batches (after one warm-up batch)."""
    embedder.embed_arrays(stack[:batch])
    started = time.perf_counter()
    for start in range(0, len(stack), batch):
        embedder.embed_arrays(stack[start : start + batch])
    return time.perf_counter() - started


def raw_limit(bundle_dir: Path, photos: list[Path], batch: int = 32) -> float:
    """Photos/s of one onnxruntime session on every core, on pre-decoded photos."""
    from photosieve.bundle import ModelBundle
    from photosieve.scoring import backbone_for
    from photosieve.vision.embed import Embedder

    bundle = ModelBundle.load(bundle_dir)
    embedder = Embedder(backbone_for(bundle.backbone_id))
    stack = _decoded_stack(embedder, photos)
    return len(stack) / _timed_inference(embedder, stack, batch)


def _per_core_worker(args: tuple[str, list[Path], int, Any]) -> tuple[int, float]:
    from photosieve.bundle import ModelBundle
    from photosieve.scoring import backbone_for
    from photosieve.vision.embed import Embedder

    bundle_dir, photos, batch, barrier = args
    bundle = ModelBundle.load(bundle_dir)
    embedder = Embedder(backbone_for(bundle.backbone_id), threads=1)
    stack = _decoded_stack(embedder, photos)
    embedder.embed_arrays(stack[:batch])
    barrier.wait()  # every process starts timing together
    return len(stack), _timed_inference(embedder, stack, batch)


def raw_limit_per_core(bundle_dir: Path, photos: list[Path], batch: int = 32) -> float:
    """Photos/s of one single-thread session per core, in parallel processes, pre-decoded."""
    cores = available_cores()
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        barrier = manager.Barrier(cores)
        shares = [(str(bundle_dir), photos[i::cores], batch, barrier) for i in range(cores)]
        with context.Pool(cores) as pool:
            results = pool.map(_per_core_worker, shares)
    return sum(n for n, _ in results) / max(seconds for _, seconds in results)


def engine_rate(engine: str, folder: Path, bundle_dir: Path, work: Path) -> float:
    from photosieve.batch.job import BacklogConfig, score_backlog

    out = work / f"{engine}.parquet"
    cfg = BacklogConfig(engine=engine, chunk_size=1024)
    started = time.perf_counter()
    summary = score_backlog(folder, bundle_dir, out, cfg)
    return summary.photos / (time.perf_counter() - started)


def one_round(folder: Path, bundle_dir: Path, photos: list[Path], work: Path) -> dict[str, float]:
    """Every measurement once, back to back (the limit layouts, then each engine)."""
    import ray

    row = {
        "limit_one_session_all_cores": raw_limit(bundle_dir, photos),
        "limit_one_thread_session_per_core": raw_limit_per_core(bundle_dir, photos),
        "local_photos_per_s": engine_rate("local", folder, bundle_dir, work),
    }
    ray.init(num_cpus=available_cores(), include_dashboard=False, log_to_driver=False)
    row["ray_photos_per_s"] = engine_rate("ray", folder, bundle_dir, work)
    ray.shutdown()
    limit = max(row["limit_one_session_all_cores"], row["limit_one_thread_session_per_core"])
    row["limit_photos_per_s"] = limit
    row["local_ratio"] = row["local_photos_per_s"] / limit
    row["ray_ratio"] = row["ray_photos_per_s"] / limit
    print(json.dumps(row), flush=True)
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3, help="median of this many rounds")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    from service_latency import bench_photos, prepare_bundle

    photos = bench_photos(args.photos)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        folder = work / "photos"
        folder.mkdir()
        for i, p in enumerate(photos):
            os.symlink(p, folder / f"{i:06d}{p.suffix}")
        bundle_dir, origin = prepare_bundle(work, available_cores())
        rounds = [one_round(folder, bundle_dir, photos, work) for _ in range(args.rounds)]
        shutil.rmtree(folder)
    result: dict[str, Any] = {
        "photos": len(photos),
        "cores": available_cores(),
        "bundle": origin,
        **{key: float(np.median([r[key] for r in rounds])) for key in rounds[0]},
        "rounds": rounds,
        "targets": {"local_ratio": 0.85, "ray_ratio": 0.75},
        "load_average": os.getloadavg(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "rounds"}, indent=2))


if __name__ == "__main__":
    main()
