"""Pooled feature variants of EfficientNet-Lite0 for every photo of the bench split (a cache).

For each photo (decoded and resized by the project's own `load_for_model`, normalised as the
ONNX graph does) and for its horizontal mirror, the backbone runs once and every pooling is
derived from the same maps: of the final 1280×7×7 map the average (the current embedding),
max and GeM (p=3) pools; of earlier blocks (stage 5: 112×14×14, stage 7: 320×7×7) the average
and max pools. Arrays are written in chunks to `work/variants/chunks/` (resumable) and joined
into `work/variants/<view>_<pool>.npy` float16, row-aligned with the split manifest.

    .venv/bin/python bench/variant_features.py [--split work/data/split.csv] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from photosieve.vision.backbone import EfficientNetLite, create_backbone
from photosieve.vision.preprocess import load_for_model

STAGE5_END = 10  # index of the last block of stage 5 (112 channels, stride 16)
STAGE7_END = 15  # last MBConv block (320 channels, stride 32)
VIEWS = ("orig", "flip")
CHUNK = 256


def pooled_maps(model: EfficientNetLite, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every pooling variant of one normalised batch (N, 3, H, W)."""
    h = model.act(model._bn0(model._conv_stem(x)))
    out: dict[str, torch.Tensor] = {}
    for i, block in enumerate(model._blocks):
        h = block(h)
        if i == STAGE5_END:
            out["s5avg"], out["s5max"] = h.mean(dim=(2, 3)), h.amax(dim=(2, 3))
        if i == STAGE7_END:
            out["s7avg"], out["s7max"] = h.mean(dim=(2, 3)), h.amax(dim=(2, 3))
    fmap = model.act(model._bn1(model._conv_head(h)))
    out["avg"] = fmap.mean(dim=(2, 3))
    out["max"] = fmap.amax(dim=(2, 3))
    out["gem3"] = fmap.clamp(min=1e-6).pow(3).mean(dim=(2, 3)).pow(1.0 / 3.0)
    return out


def extract(split: Path, outdir: Path, threads: int, reverse: bool = False) -> None:
    torch.set_num_threads(threads)
    frame = pd.read_csv(split)
    paths = [Path(p) for p in frame["path"]]
    model = create_backbone("efficientnet_lite0").eval()
    cfg = model.config.preprocess
    mean = torch.tensor(cfg.mean).view(1, 3, 1, 1) * 255.0
    std = torch.tensor(cfg.std).view(1, 3, 1, 1) * 255.0
    chunks = outdir / "chunks"
    chunks.mkdir(parents=True, exist_ok=True)
    started, done = time.perf_counter(), 0
    with ThreadPoolExecutor(2) as pool, torch.no_grad():
        order = list(enumerate(range(0, len(paths), CHUNK)))
        for c, start in reversed(order) if reverse else order:
            target = chunks / f"chunk-{c:04d}.npz"
            if target.is_file():
                continue
            batch = np.stack(
                list(pool.map(lambda p: load_for_model(p, cfg), paths[start : start + CHUNK]))
            )
            x = (torch.from_numpy(batch).permute(0, 3, 1, 2).float() - mean) / std
            arrays: dict[str, list[np.ndarray]] = {}
            for view in VIEWS:
                xv = torch.flip(x, dims=[3]) if view == "flip" else x
                for sub in range(0, len(xv), 64):
                    pooled = pooled_maps(model, xv[sub : sub + 64])
                    for name, t in pooled.items():
                        arrays.setdefault(f"{view}_{name}", []).append(t.numpy())
            tmp = chunks / f".tmp-{c:04d}-{os.getpid()}.npz"
            np.savez(tmp, **{k: np.concatenate(v) for k, v in arrays.items()})  # type: ignore[arg-type]
            os.replace(tmp, target)
            done += len(batch)
            rate = done / (time.perf_counter() - started)
            print(
                f"chunk {c}: {start + len(batch)}/{len(paths)} photos, {rate:.1f} photos/s",
                flush=True,
            )
    if len(list(chunks.glob("chunk-*.npz"))) == len(order):
        join(outdir, len(paths))


def join(outdir: Path, n: int) -> None:
    files = sorted((outdir / "chunks").glob("chunk-*.npz"))
    parts = [np.load(f) for f in files]
    for key in parts[0].files:
        arr = np.concatenate([p[key] for p in parts]).astype(np.float16)
        if len(arr) != n:
            raise SystemExit(f"{key}: {len(arr)} rows for {n} photos")
        np.save(outdir / f"{key}.npy", arr)
    print(f"joined {len(parts[0].files)} arrays of {n} rows into {outdir}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", type=Path, default=Path("work/data/split.csv"))
    parser.add_argument("--out", type=Path, default=Path("work/variants"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reverse", action="store_true", help="last chunk first (a 2nd worker)")
    parser.add_argument("--join", action="store_true", help="only join the chunks")
    args = parser.parse_args()
    if args.join:
        join(args.out, len(pd.read_csv(args.split)))
    else:
        extract(args.split, args.out, args.threads, args.reverse)


if __name__ == "__main__":
    main()
