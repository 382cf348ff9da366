"""Small-object evidence — max-pooled overlapping tiles, or the whole photo at a higher
resolution — vs today's Lite0 avg+max at 224 px, out of fold (issue 11).

Same machinery as `gunmap_workload.py`: cross-fitted OOF scores of all primary photos
(`oof_scores.py`, workload-planner shares, external icons in training only, one seed of today's
MLP config for both recipes), then random calibration/test draws at the plan's sizes with the
certified threshold (99/98/95% recall at 95% confidence). The tile recipe's features are today's
whole-photo embedding concatenated with `tile_features.py`'s (the product's Lite0 avg+max graph
on the 2×2 overlapping 224-px tiles of the photo at 384 px, max-pooled over tiles); with
`--features tiles384 whole384` also Lite0 avg+max run once on the whole photo at 384 px, alone
and concatenated with today's. The recipe is *chosen* on the validation slices' review rate at
99% recall, never on the draws; `--seeds` repeats every recipe with head seed 1 (seed noise).

    PYTHONPATH=src python bench/tile_features.py --ingested work/data/ingested.csv
    PYTHONPATH=src python bench/tile_features.py --ingested work/data/ingested.csv --whole
    PYTHONPATH=src python bench/tile_workload.py --workdir work --features tiles384 whole384 --seeds
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from oof_scores import Recipe, load_bench
from recipe_runs import add_recipe_arguments, recipes_table, score_recipes, with_seed_1
from shortcut_check import L0, TODAY

RESULTS = Path(__file__).parent / "results" / "tile_workload.json"


def recipes_for(features: list[str], backbones: list[str]) -> list[Recipe]:
    """Today's, then each feature set next to today's embedding (and a whole-photo one alone),
    then each other registered backbone alone (a peer at its own cost)."""
    recipes = [TODAY]
    for name in features:
        if name.startswith("whole"):
            recipes.append(Recipe(f"lite0_{name}_only_mlp1", (name,), "mlp1"))
        recipes.append(Recipe(f"lite0_{name}_mlp1", (L0, name), "mlp1"))
    recipes += [Recipe(f"{name.removeprefix('efficientnet_')}_mlp1", (name,), "mlp1")
                for name in backbones]  # fmt: skip
    return recipes


def model_costs(workdir: Path, backbones: list[str], rounds: int = 4) -> dict[str, Any]:
    """Model CPU per photo of each recipe's passes, one onnxruntime thread, batches of 32 images
    (8 photos at 384 px), random pixels, interleaved rounds; medians and ratios to Lite0@224."""
    import time

    from photosieve.vision.backbone import backbone_config
    from photosieve.vision.onnx import export_onnx
    from photosieve.vision.runtime import INPUT_NAME, create_session
    from tile_features import export_whole

    # name: (graph, input size, images a call, passes a photo)
    graphs = {
        "lite0_224": (export_onnx(L0, workdir), 224, 32, 1),
        "tiles384 (4 tiles)": (export_onnx(L0, workdir), 224, 32, 4),
        "whole384": (export_whole(384, workdir), 384, 8, 1),
    } | {b: (export_onnx(b, workdir), backbone_config(b).preprocess.input_size, 32, 1)
         for b in backbones}  # fmt: skip
    sessions = {name: create_session(g[0], threads=1) for name, g in graphs.items()}
    rng = np.random.default_rng(0)
    seconds: dict[str, list[float]] = {name: [] for name in graphs}
    for _ in range(rounds):
        for name, (_, size, batch, passes) in graphs.items():
            x = rng.integers(0, 255, (batch, size, size, 3), dtype=np.uint8)
            sessions[name].run(None, {INPUT_NAME: x})  # warm-up
            started = time.process_time()
            for _ in range(3):
                sessions[name].run(None, {INPUT_NAME: x})
            seconds[name].append((time.process_time() - started) / (3 * batch) * passes)
    base = float(np.median(seconds["lite0_224"]))
    return {
        name: {
            "ms_per_photo": 1000 * float(np.median(v)),
            "over_lite0_224": float(np.median(v)) / base,
        }
        for name, v in seconds.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_recipe_arguments(parser)
    parser.add_argument("--tiles", type=Path, default=Path("work/tiles"))
    parser.add_argument("--features", nargs="+", default=["tiles384"])
    parser.add_argument(
        "--backbones", nargs="*", default=[],
        help="registered backbones tried alone too, e.g. efficientnet_lite2_224_avgmax",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.table:
        print(recipes_table(json.loads(RESULTS.read_text())))
        return 0
    bench = load_bench(args.workdir / "data" / "ingested.csv", args.workdir, [L0, *args.backbones])
    costs = {}
    for name in args.features:
        feats = np.load(args.tiles / f"{name}.npy").astype(np.float32)
        if feats.shape[0] != len(bench.frame) or np.isnan(feats[:, 0]).any():
            raise SystemExit(f"{args.tiles / name}.npy does not cover every bench row")
        bench.features[name] = feats
        costs[name] = json.loads((args.tiles / f"{name}.json").read_text())
    results: dict[str, Any] = {
        "machine": platform.node(),
        "draws": args.draws,
        "features": costs,
        "model_cpu": model_costs(args.workdir, args.backbones),
    }
    print(json.dumps(results["model_cpu"], indent=1), flush=True)
    recipes = with_seed_1(recipes_for(args.features, args.backbones), args.seeds)
    score_recipes(bench, recipes, results, RESULTS, args)
    print(recipes_table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
