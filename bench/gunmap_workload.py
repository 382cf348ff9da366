"""The gun-map backbone vs today's Lite0 avg+max, out of fold (issue 11 b) → gunmap_workload.json.

Same machinery as `certified_workload.py`: cross-fitted OOF scores of all primary photos
(`oof_scores.py`, workload-planner shares, external icons in training only, one seed of today's
MLP config for both), then random calibration/test draws at the plan's sizes with the certified
threshold (99/98/95% recall at 95% confidence). Both recipes read one embedding pass: the
gun-map backbone (`efficientnet_lite0_gunmap`, 2,570-d) whose first 2,560 columns are today's
avg+max embedding. The recipe is *chosen* on the validation slices' review rate at 99% recall,
never on the draws. OOF scores are shared with `shortcut_check.py` through the cache.
`--seeds` repeats both with other head seeds (`mlp1s1`: seed 1) to show the seed noise.

    PYTHONPATH=src nice -n 15 python bench/gunmap_workload.py --workdir /tmp/model-work --draws 1000
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from certified_workload import _origin, plan_sizes, run_draws, validation_table
from oof_scores import load_bench, oof_scores
from photosieve.data.plan import plan_by_workload
from photosieve.learn.metrics import average_precision
from shortcut_check import GUNMAP, GUNMAP_RECIPE, L0, PREFIX, TODAY

RESULTS = Path(__file__).parent / "results" / "gunmap_workload.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("work"))
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--seeds", action="store_true", help="also with head seed 1 (mlp1s1)")
    parser.add_argument("--table", action="store_true", help="print the README rows and exit")
    args = parser.parse_args(argv)
    if args.table:
        print(table(json.loads(RESULTS.read_text())))
        return 0
    bench = load_bench(
        args.workdir / "data" / "ingested.csv", args.workdir, [GUNMAP, L0], prefix_of=PREFIX
    )
    n_pos = int(bench.y[bench.primary].sum())
    plan = plan_by_workload(n_pos)[0]
    sizes = plan_sizes(bench, plan, seed=args.seed)
    mask = bench.primary
    origin = _origin(bench.frame["origin"].to_numpy()[mask])
    results: dict[str, Any] = {"machine": platform.node(), "draws": args.draws, "sizes": sizes}
    recipes = [TODAY, GUNMAP_RECIPE]
    if args.seeds:
        recipes += [replace(r, name=f"{r.name}s1", head="mlp1s1") for r in recipes]
    for recipe in recipes:
        scores, info = oof_scores(
            bench,
            recipe,
            plan,
            k=args.folds,
            seed=args.seed,
            jobs=args.jobs,
            cache_dir=args.workdir / "certified_workload",
        )
        s, y = scores[mask], bench.y[mask]
        results[recipe.name] = {
            "recipe": info,
            "ap": average_precision(s, y),
            "targets": run_draws(s, y, origin, sizes, draws=args.draws, seed=args.seed),
        }
        print(recipe.name, json.dumps(info["validation"]), flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    print(table(results))
    return 0


def table(results: dict[str, Any]) -> str:
    """README rows: validation choice figure, then the draws per target."""
    names = [k for k in results if isinstance(results[k], dict) and "recipe" in results[k]]
    runs = {
        n: (results[n]["recipe"]["validation"]["review_at_99_prev1pct"], results[n]) for n in names
    }
    return "\n".join(validation_table(runs))


if __name__ == "__main__":
    raise SystemExit(main())
