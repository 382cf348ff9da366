"""Augmented views of the training photos for the frozen backbone's head (issue 11) →
results/view_workload.json.

The GPU fine-tuning's gain came with pixel augmentation (crops, flips, colour). With the
backbone frozen, can the head alone gain from augmentation — each training photo's mirror image
and a random crop embedded once and added to training as rows of the photo's label — at no
serving cost (the served model still embeds the photo once)? Views are made for every bench
photo (training only: a view trains exactly when its photo trains in a fold, `oof_scores.Extras`;
validation, calibration and test scores are the plain photos'). The crop keeps 70–100% of the
area (aspect 3:4–4:3), so a gun near the border may be cut out of a few positives' crops.

Same machinery, folds, plan and draws as `lite1_workload.py` (`recipe_runs.score_recipes`, the
product's backbone `efficientnet_lite1_avgmax`, one head seed of today's MLP config, `--seeds`
repeats with seed 1, `--mlp5` the product's 5-seed head), chosen on validation.

    PYTHONPATH=src python bench/view_workload.py --workdir /tmp/runs/lite1 --draws 1000 --seeds
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).parent))
from oof_scores import Bench, Extras, Recipe, load_bench
from photosieve.vision.embed import Embedder
from photosieve.vision.preprocess import PreprocessConfig, load_image, resize_for_model
from recipe_runs import add_recipe_arguments, recipes_table, score_and_report, with_seed_1

RESULTS = Path(__file__).parent / "results" / "view_workload.json"
LITE1 = "efficientnet_lite1_avgmax"
VIEWS = ("flip", "crop")
CROP_AREA = (0.7, 1.0)
CROP_ASPECT = (3 / 4, 4 / 3)


def random_crop(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A crop of `CROP_AREA` of the photo's area at an aspect ratio within `CROP_ASPECT`."""
    w, h = image.size
    area = rng.uniform(*CROP_AREA)
    aspect = math.exp(rng.uniform(math.log(CROP_ASPECT[0]), math.log(CROP_ASPECT[1])))
    cw = max(1, min(w, round(w * math.sqrt(area * aspect))))
    ch = max(1, min(h, round(h * math.sqrt(area / aspect))))
    x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    return image.crop((x0, y0, x0 + cw, y0 + ch))


def view_arrays(path: str, cfg: PreprocessConfig, seed: int) -> np.ndarray:
    """(len(VIEWS), S, S, 3) uint8 model inputs of one photo's views (flip, crop)."""
    image = load_image(path, draft_size=cfg.decode_size)
    rng = np.random.default_rng(seed)
    views = {"flip": ImageOps.mirror(image), "crop": random_crop(image, rng)}
    return np.stack([np.asarray(resize_for_model(views[v], cfg), np.uint8) for v in VIEWS])


def view_embeddings(bench: Bench, workdir: Path, batch: int = 64) -> np.ndarray:
    """(len(VIEWS), N, D) embeddings of every bench photo's views (cached in the workdir)."""
    cache = workdir / "view_workload" / f"{LITE1}-{'-'.join(VIEWS)}-{len(bench.frame)}.npy"
    if cache.is_file():
        return np.load(cache)
    embedder = Embedder(LITE1, workdir=workdir)
    cfg = embedder.config.preprocess
    paths = bench.frame["path"].astype(str).tolist()
    out = np.zeros((len(VIEWS), len(paths), embedder.config.embed_dim), np.float32)
    with ThreadPoolExecutor(max_workers=2) as pool:
        for start in range(0, len(paths), batch):
            rows = range(start, min(start + batch, len(paths)))
            arrays = list(pool.map(lambda i: view_arrays(paths[i], cfg, seed=i), rows))
            stacked = np.stack(arrays, axis=1)  # (V, B, S, S, 3)
            for v in range(len(VIEWS)):
                out[v, start : start + len(rows)] = embedder.embed_arrays(stacked[v])
            if start % (batch * 40) == 0:
                print(f"  views: {start + len(rows)}/{len(paths)} photos", flush=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, out)
    return out


def view_extras(
    bench: Bench, X_views: np.ndarray, views: tuple[str, ...], *, positives_only: bool = False
) -> Extras:
    """The chosen views as training rows tied to their photos (`Extras.train`); with
    `positives_only`, the offensive photos' views alone (a cheaper training set)."""
    rows = np.flatnonzero(bench.y == 1) if positives_only else np.arange(len(bench.frame))
    picked = [X_views[VIEWS.index(v)][rows] for v in views]
    return Extras(
        score={},
        train=(
            np.concatenate(picked),
            np.tile(bench.y[rows], len(picked)),
            np.tile(rows, len(picked)),
        ),
        tag="views-" + "-".join(views) + ("-pos" if positives_only else ""),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_recipe_arguments(parser)
    parser.add_argument("--mlp5", action="store_true", help="also the product's 5-seed head")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--extras", nargs="+", default=["flip", "views"], choices=["flip", "views", "flippos"],
        help="training views: flip, flip + crop, or the positives' flips alone",
    )  # fmt: skip
    parser.add_argument("--mlp5-extras", nargs="*", default=["flip"], help="views with --mlp5")
    parser.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args(argv)
    if args.table:
        print(recipes_table(json.loads(args.out.read_text())))
        return 0
    results: dict[str, Any] = {"machine": platform.node(), "draws": args.draws, "views": VIEWS}
    bench = load_bench(args.workdir / "data" / "ingested.csv", args.workdir, [LITE1])
    X_views = view_embeddings(bench, args.workdir)
    every = {
        "flip": view_extras(bench, X_views, ("flip",)),
        "views": view_extras(bench, X_views, VIEWS),
        "flippos": view_extras(bench, X_views, ("flip",), positives_only=True),
    }
    extras = {name: every[name] for name in args.extras}
    base = [Recipe("lite1_mlp1", (LITE1,), "mlp1")] if args.baseline else []
    recipes = base + [Recipe(f"lite1_mlp1_{name}", (LITE1,), "mlp1") for name in extras]
    recipes = with_seed_1(recipes, args.seeds)
    if args.mlp5:
        recipes += [Recipe("lite1_mlp5", (LITE1,), "mlp5")] if args.baseline else []
        recipes += [
            Recipe(f"lite1_mlp5_{name}", (LITE1,), "mlp5")
            for name in extras
            if name in args.mlp5_extras
        ]
    by_recipe = {
        r.name: extras[key]
        for r in recipes
        for key in extras
        if r.name.endswith((f"_{key}", f"_{key}s1"))
    }
    score_and_report(bench, recipes, results, args, extras=by_recipe)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
