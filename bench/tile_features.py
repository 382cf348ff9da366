"""Tile features of every bench photo: Lite0 avg+max on 4 overlapping 224-px tiles, max-pooled.

Issue 11's "evidence for small objects": a handgun that fills 2% of the frame is a few cells of
the backbone's 7×7 map at 224 px. Here each photo (decoded and squashed by the project's own
`load_for_model`, at `--size` px, 384 by default: a 1.7× zoom) is cut into the 2×2 tiles of 224
px at offsets 0 and `size − 224` (overlapping by 64 px at 384, so an object on a seam is whole in
one tile); the product's `efficientnet_lite0_avgmax` ONNX graph embeds each tile and the 4 tile
embeddings are max-pooled column-wise into one 2,560-d vector (`max over tiles` of the avg and
of the max pools). The whole-photo embedding stays the product's; `tile_workload.py` tries the
concatenation [whole, tiles] out of fold.

`--whole` instead runs Lite0 avg+max once on the whole photo at `--size` px (its own ONNX graph,
exported here from the same weights; the network is fully convolutional, so the 7×7 map becomes
12×12 at 384 px): the same zoom for ~(size/224)² of one pass instead of 4 passes.

Rows follow `ingested.csv`; a photo that fails to decode gets NaN. Processes split the rows,
each with a one-thread onnxruntime session; the CPU seconds per photo (tiles only) are written
next to the array so the cost is a ratio to the whole-photo pass measured in the same run.

    PYTHONPATH=src python bench/tile_features.py --ingested work/data/ingested.csv \
        --out work/tiles
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

TILE = 224
BACKBONE = "efficientnet_lite0_avgmax"
CHUNK = 32  # photos a model call group (4 tiles each)
TIMED_CHUNKS = 2  # chunks a process also runs whole (for the CPU ratio)


def tile_offsets(size: int) -> list[tuple[int, int]]:
    """Top-left corners of the 2×2 tiles of `TILE` px covering a `size`² photo."""
    if size < TILE:
        raise ValueError(f"size must be at least {TILE}, got {size}")
    far = size - TILE
    return [(top, left) for top in (0, far) for left in (0, far)]


def export_whole(size: int, workdir: Path) -> Path:
    """Lite0 avg+max's uint8 → embedding graph at `size` px (pretrained weights), cached."""
    from dataclasses import replace

    from photosieve.vision.backbone import create_backbone
    from photosieve.vision.onnx import export_features
    from photosieve.vision.preprocess import PreprocessConfig

    target = workdir / "onnx" / f"lite0_avgmax_whole{size}.onnx"
    if target.is_file():
        return target
    model = create_backbone(BACKBONE)
    model.config = replace(model.config, preprocess=PreprocessConfig(input_size=size))
    return export_features(model, target)


def _part(
    args: tuple[list[str], int, str, str | None],
) -> tuple[np.ndarray, float, float, int]:
    """Tile features of `paths` (one process, one onnxruntime thread) — or, given a whole-photo
    graph, its embeddings; (features, CPU s, whole-photo CPU s at 224 on the same photos,
    photos timed)."""
    paths, size, workdir, whole_graph = args
    from photosieve.vision.embed import Embedder
    from photosieve.vision.preprocess import PreprocessConfig, load_for_model
    from photosieve.vision.runtime import INPUT_NAME, create_session

    embedder = Embedder(BACKBONE, Path(workdir), threads=1)
    cfg = PreprocessConfig(input_size=size)
    whole_cfg = embedder.config.preprocess
    offsets = [(0, 0)] if whole_graph else tile_offsets(size)
    crop = size if whole_graph else TILE
    if whole_graph:
        session = create_session(Path(whole_graph), threads=1)

        def run(batch: np.ndarray) -> np.ndarray:
            return np.asarray(session.run(None, {INPUT_NAME: batch})[0], dtype=np.float32)
    else:
        run = embedder.embed_arrays
    run(np.zeros((len(offsets), crop, crop, 3), np.uint8))  # warm-up, untimed
    embedder.embed_arrays(np.zeros((1, TILE, TILE, 3), np.uint8))
    out = np.full((len(paths), embedder.config.embed_dim), np.nan, dtype=np.float32)
    tile_cpu = whole_cpu = 0.0
    timed = 0
    for start in range(0, len(paths), CHUNK):
        timing = start < TIMED_CHUNKS * CHUNK  # the cost ratio from each part's first chunks
        arrays, rows = [], []
        wholes: list[np.ndarray] = []
        for i, path in enumerate(paths[start : start + CHUNK], start):
            try:
                photo = load_for_model(path, cfg)
                whole = load_for_model(path, whole_cfg) if timing else None
            except Exception:  # a bad photo stays NaN
                continue
            arrays += [photo[t : t + crop, left : left + crop] for t, left in offsets]
            rows.append(i)
            if whole is not None:
                wholes.append(whole)
        if not rows:
            continue
        begun = time.process_time()
        emb = run(np.ascontiguousarray(np.stack(arrays)))
        if timing:
            tile_cpu += time.process_time() - begun
            begun = time.process_time()
            embedder.embed_arrays(np.stack(wholes))
            whole_cpu += time.process_time() - begun
            timed += len(rows)
        out[rows] = emb.reshape(len(rows), len(offsets), -1).max(axis=1)
    return out, tile_cpu, whole_cpu, timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ingested", type=Path, default=Path("work/data/ingested.csv"))
    parser.add_argument("--out", type=Path, default=Path("work/tiles"))
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument("--workdir", type=Path, default=Path("work"))
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--whole", action="store_true", help="one pass on the whole photo")
    args = parser.parse_args()
    paths = pd.read_csv(args.ingested)["path"].astype(str).tolist()
    parts = np.array_split(np.arange(len(paths)), args.jobs * 8)
    graph = str(export_whole(args.size, args.workdir)) if args.whole else None
    name = f"{'whole' if args.whole else 'tiles'}{args.size}"
    jobs = [([paths[i] for i in part], args.size, str(args.workdir), graph) for part in parts]
    started = time.perf_counter()
    with ProcessPoolExecutor(args.jobs) as pool:
        results = list(pool.map(_part, jobs))
    features = np.concatenate([r[0] for r in results])
    tile_cpu, whole_cpu, timed = (sum(r[k] for r in results) for k in (1, 2, 3))
    args.out.mkdir(parents=True, exist_ok=True)
    np.save(args.out / f"{name}.npy", features)
    meta = {
        "features": name,
        "size": args.size,
        "offsets": [(0, 0)] if args.whole else tile_offsets(args.size),
        "photos": len(paths),
        "failed": int(np.isnan(features[:, 0]).sum()),
        "wall_s": time.perf_counter() - started,
        "model_cpu_s_per_photo": {name: tile_cpu / timed, "whole224": whole_cpu / timed},
        "cpu_over_whole224": tile_cpu / whole_cpu,
    }
    (args.out / f"{name}.json").write_text(json.dumps(meta, indent=2))
    print(json.dumps(meta, indent=2))


if __name__ == "__main__":
    main()
