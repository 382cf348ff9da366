"""Backlog scoring throughput: the raw onnxruntime limit, `--engine local` and `--engine ray`.

    .venv/bin/python bench/batch_throughput.py [--photos 2000] [--out ...]

In one run, on the same bench photos and the same bundle (the trained one in the workdir, else a
tiny logistic head on the same backbone — the head costs nothing next to the backbone):

- **limit**: the photos decoded and resized beforehand (untimed), then only onnxruntime, batches
  of 32, every core: the most any engine could reach on this machine;
- **local**: `score_backlog(engine="local")` end to end: listing, decoding in worker processes,
  onnxruntime, Parquet parts and the final file;
- **ray**: the same on Ray Data (local Ray with this machine's cores, started before timing;
  actor start-up is inside the time).

Reported as photos/s and as ratios to the limit (targets: local ≥ 0.85, Ray ≥ 0.75). Writes
bench/results/batch_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from photosieve.batch.decode import decode_for_model
from photosieve.batch.job import BacklogConfig, score_backlog
from photosieve.bundle import ModelBundle
from photosieve.scoring import backbone_for
from photosieve.vision.embed import Embedder
from photosieve.vision.onnx import available_cores
from service_latency import bench_photos, prepare_bundle

OUT = Path(__file__).parent / "results" / "batch_throughput.json"


def raw_limit(bundle_dir: Path, photos: list[Path], batch: int = 32) -> float:
    """Photos/s of onnxruntime alone on pre-decoded photos (the hardware limit here)."""
    bundle = ModelBundle.load(bundle_dir)
    embedder = Embedder(backbone_for(bundle.backbone_id))
    cfg = embedder.config.preprocess
    decoded = [decode_for_model(str(p), cfg) for p in photos]
    stack = np.stack([f for d in decoded if not isinstance(d, str) for f in d])
    embedder.embed_arrays(stack[:batch])  # warm-up
    started = time.perf_counter()
    for start in range(0, len(stack), batch):
        embedder.embed_arrays(stack[start : start + batch])
    return len(stack) / (time.perf_counter() - started)


def engine_rate(engine: str, folder: Path, bundle_dir: Path, work: Path) -> float:
    out = work / f"{engine}.parquet"
    cfg = BacklogConfig(engine=engine, chunk_size=1024)
    started = time.perf_counter()
    summary = score_backlog(folder, bundle_dir, out, cfg)
    return summary.photos / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    photos = bench_photos(args.photos)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        folder = work / "photos"
        folder.mkdir()
        for i, p in enumerate(photos):
            os.symlink(p, folder / f"{i:06d}{p.suffix}")
        bundle_dir, origin = prepare_bundle(work, available_cores())
        limit = raw_limit(bundle_dir, photos)
        local = engine_rate("local", folder, bundle_dir, work)
        import ray

        ray.init(num_cpus=available_cores(), include_dashboard=False, log_to_driver=False)
        on_ray = engine_rate("ray", folder, bundle_dir, work)
        ray.shutdown()
        shutil.rmtree(folder)
    result = {
        "photos": len(photos),
        "cores": available_cores(),
        "bundle": origin,
        "limit_photos_per_s": limit,
        "local_photos_per_s": local,
        "ray_photos_per_s": on_ray,
        "local_ratio": local / limit,
        "ray_ratio": on_ray / limit,
        "targets": {"local_ratio": 0.85, "ray_ratio": 0.75},
        "load_average": os.getloadavg(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
