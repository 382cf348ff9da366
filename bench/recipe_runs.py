"""What the recipe benches share: their options, the seed-1 repeats, scoring each recipe out of
fold with its calibration/test draws, and the README rows (`gunmap_workload.py`,
`tile_workload.py`). The machinery itself lives in `oof_scores.py` (cross-fitted scores) and
`certified_workload.py` (plan sizes, draws, tables).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from certified_workload import _origin, plan_sizes, run_draws, validation_table
from oof_scores import Bench, Extras, Recipe, figures_only, oof_scores_with_extras
from photosieve.data.plan import plan_by_workload
from photosieve.learn.metrics import average_precision


def add_recipe_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every recipe bench shares (`gunmap_workload.py`, `tile_workload.py`)."""
    parser.add_argument("--workdir", type=Path, default=Path("work"))
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--seeds", action="store_true", help="also with head seed 1 (mlp1s1)")
    parser.add_argument("--table", action="store_true", help="print the README rows and exit")


def with_seed_1(recipes: list[Recipe], seeds: bool) -> list[Recipe]:
    """`recipes`, and with `seeds` each again with head seed 1 (`…s1`: the seed noise)."""
    if not seeds:
        return recipes
    return recipes + [replace(r, name=f"{r.name}s1", head="mlp1s1") for r in recipes]


def score_recipes(
    bench: Bench,
    recipes: list[Recipe],
    results: dict[str, Any],
    out: Path,
    args: argparse.Namespace,
    extras: Mapping[str, Extras] | None = None,
) -> dict[str, Any]:
    """Each recipe's OOF scores (workload plan, cached under `<workdir>/certified_workload`)
    and its draws into `results[recipe.name]`; `results` is written to `out` after each.
    `extras` (recipe name → `oof_scores.Extras`) adds training rows to a recipe's folds."""
    plan = plan_by_workload(int(bench.y[bench.primary].sum()))[0]
    sizes = plan_sizes(bench, plan, seed=args.seed)
    mask = bench.primary
    origin = _origin(bench.frame["origin"].to_numpy()[mask])
    results.setdefault("sizes", sizes)
    cache = args.workdir / "certified_workload"
    for recipe in recipes:
        scores, _, info = oof_scores_with_extras(
            bench, recipe, plan, k=args.folds, seed=args.seed, jobs=args.jobs, cache_dir=cache,
            extras=(extras or {}).get(recipe.name),
        )  # fmt: skip
        s, y = scores[mask], bench.y[mask]
        results[recipe.name] = {
            "recipe": info,
            "ap": average_precision(s, y),
            "targets": run_draws(s, y, origin, sizes, draws=args.draws, seed=args.seed),
        }
        print(recipe.name, json.dumps(info["validation"]), flush=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2))
    return results


def without_scores(results: dict[str, Any]) -> dict[str, Any]:
    """`results` with each recipe's info reduced to its figures (`oof_scores.figures_only`)."""
    return {
        name: run | {"recipe": figures_only(run["recipe"])}
        if isinstance(run, dict) and "recipe" in run
        else run
        for name, run in results.items()
    }


def score_and_report(
    bench: Bench,
    recipes: list[Recipe],
    results: dict[str, Any],
    args: argparse.Namespace,
    extras: Mapping[str, Extras] | None = None,
) -> None:
    """`score_recipes` into `args.out`, then that file without the per-photo scores, and the
    README rows printed."""
    score_recipes(bench, recipes, results, args.out, args, extras=extras)
    args.out.write_text(json.dumps(without_scores(results), indent=2))
    print(recipes_table(results))


def recipes_table(results: dict[str, Any]) -> str:
    """README rows of `score_recipes`' results: validation choice figure, then the draws."""
    names = [k for k in results if isinstance(results[k], dict) and "recipe" in results[k]]
    runs = {
        n: (results[n]["recipe"]["validation"]["review_at_99_prev1pct"], results[n]) for n in names
    }
    return "\n".join(validation_table(runs))
