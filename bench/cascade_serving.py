"""What the cascade costs to serve: end-to-end photos/s and one-photo latency, next to one stage.

Two trained bundles (`photosieve demo --no-serve` and `photosieve demo --cascade --no-serve`,
each in its own workdir) score the same real bench photos, drawn at 1% prevalence from the
primary source (the stage-2 share depends on the mix), in alternating rounds (the box is
shared, so load drifts between rounds):

(a) end to end: the photos' bytes decoded in 2 threads running ahead of the model (as
    `embed_files` and the service's decoding do) and scored by `Scorer.score_images` in batches
    of 32, onnxruntime on every core — photos/s, and per CPU-second of this process;
(b) one photo: `Scorer.score_bytes` one at a time on one onnxruntime thread (the service's
    default), wall ms p50 / p99 — what a lone upload pays.

The ratio cascade / one stage in the same round is the figure; the issue's limits (≥ 60 photos/s
end to end, ≤ 50 ms one photo) are checked on the absolute values. Writes
bench/results/cascade_serving.json.

    PYTHONPATH=src python bench/cascade_serving.py --single work/bundle \
        --cascade work-cascade/bundle
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from photosieve.bundle import ModelBundle
from photosieve.paths import shared_data_dir
from photosieve.scoring import Scorer, backbone_for
from photosieve.vision.decode import decode
from photosieve.vision.embed import Embedder
from photosieve.vision.onnx import available_cores

RESULTS = Path(__file__).parent / "results" / "cascade_serving.json"
BATCH = 32


def photos_at_one_percent(n: int, seed: int) -> list[bytes]:
    """`n` primary bench photos, 1% of them offensive, as bytes."""
    data = shared_data_dir()
    if data is None:
        raise SystemExit("../shared/data/bench is not beside the checkout")
    manifest = data / "bench" / "manifest.csv"
    df = pd.read_csv(manifest)
    df = df[df["source"] == "primary"]
    positives = max(1, round(0.01 * n))
    picked = pd.concat([
        df[df["label"] == "offensive"].sample(positives, random_state=seed),
        df[df["label"] == "ok"].sample(n - positives, random_state=seed),
    ]).sample(frac=1.0, random_state=seed)  # fmt: skip
    return [(manifest.parent / p).read_bytes() for p in picked["path"]]


def scorer_for(bundle: ModelBundle, threads: int) -> Scorer:
    embedder = Embedder(backbone_for(bundle.backbone_id), threads=threads)
    return Scorer(bundle, embedder)


def end_to_end(scorer: Scorer, blobs: list[bytes]) -> dict[str, float]:
    size = scorer.embedder.config.preprocess.decode_size

    def decoded(chunk: list[bytes]) -> list[Any]:
        return [decode(b, draft_size=size).image for b in chunk]

    started, cpu = time.perf_counter(), time.process_time()
    scored = 0
    with ThreadPoolExecutor(2) as pool:
        batches = [pool.submit(decoded, blobs[i : i + BATCH]) for i in range(0, len(blobs), BATCH)]
        for future in batches:
            scored += len(scorer.score_images(future.result()))
    seconds, cpu_s = time.perf_counter() - started, time.process_time() - cpu
    return {"photos_per_s": scored / seconds, "photos_per_cpu_s": scored / cpu_s}


def one_photo(scorer: Scorer, blobs: list[bytes]) -> dict[str, float]:
    scorer.score_bytes(blobs[0])  # warm-up
    times = []
    for blob in blobs:
        started = time.perf_counter()
        scorer.score_bytes(blob)
        times.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": float(np.median(times)), "p99_ms": float(np.quantile(times, 0.99))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--single", type=Path, required=True, help="a one-stage bundle folder")
    parser.add_argument("--cascade", type=Path, required=True, help="a cascade bundle folder")
    parser.add_argument("--photos", type=int, default=512)
    parser.add_argument("--one-photo", type=int, default=100, help="photos for (b)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    blobs = photos_at_one_percent(args.photos, seed=0)
    bundles = {"single": ModelBundle.load(args.single), "cascade": ModelBundle.load(args.cascade)}
    cores = available_cores()
    wide = {name: scorer_for(b, cores) for name, b in bundles.items()}
    narrow = {name: scorer_for(b, 1) for name, b in bundles.items()}
    cascade = bundles["cascade"]
    assert cascade.refiner is not None, f"{args.cascade} is not a cascade bundle"
    for scorer in wide.values():  # warm-up
        scorer.score_bytes(blobs[0])
    X = wide["cascade"].embedder.embed_images(
        [decode(b, draft_size=cascade.preprocess.decode_size).image for b in blobs]
    )
    first = cascade.first_scores(X)
    share = float((first >= cascade.refiner.gate).mean())
    rounds: list[dict[str, Any]] = []
    for r in range(args.rounds):
        row: dict[str, Any] = {"load_before": os.getloadavg()[0]}
        for name in ("single", "cascade") if r % 2 == 0 else ("cascade", "single"):
            row[name] = {
                "end_to_end": end_to_end(wide[name], blobs),
                "one_photo": one_photo(narrow[name], blobs[: args.one_photo]),
            }
        row["ratio_photos_per_s"] = (
            row["cascade"]["end_to_end"]["photos_per_s"]
            / row["single"]["end_to_end"]["photos_per_s"]
        )
        rounds.append(row)
        print(json.dumps(row, indent=1), flush=True)

    def med(name: str, part: str, key: str) -> float:
        return statistics.median(r[name][part][key] for r in rounds)

    summary = {
        name: {
            "photos_per_s": med(name, "end_to_end", "photos_per_s"),
            "photos_per_cpu_s": med(name, "end_to_end", "photos_per_cpu_s"),
            "one_photo_p50_ms": med(name, "one_photo", "p50_ms"),
            "one_photo_p99_ms": med(name, "one_photo", "p99_ms"),
        }
        for name in bundles
    }
    result = {
        "machine": {"cores": cores, "platform": platform.platform()},
        "photos": args.photos,
        "stage2_share_of_these_photos": share,
        "gate": cascade.refiner.gate,
        "bundles": {
            name: str(p) for name, p in (("single", args.single), ("cascade", args.cascade))
        },
        "rounds": rounds,
        "median": summary,
        "cascade_over_single_photos_per_s": statistics.median(
            r["ratio_photos_per_s"] for r in rounds
        ),
        "limits": {
            "cascade_photos_per_s_at_least_60": summary["cascade"]["photos_per_s"] >= 60,
            "cascade_one_photo_p50_at_most_50_ms": summary["cascade"]["one_photo_p50_ms"] <= 50,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: result[k] for k in ("median", "stage2_share_of_these_photos",
                                              "cascade_over_single_photos_per_s", "limits")},
                     indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
