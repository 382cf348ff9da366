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
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from oof_scores import load_bench
from recipe_runs import add_recipe_arguments, recipes_table, score_recipes, with_seed_1
from shortcut_check import GUNMAP, GUNMAP_RECIPE, L0, PREFIX, TODAY

RESULTS = Path(__file__).parent / "results" / "gunmap_workload.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_recipe_arguments(parser)
    args = parser.parse_args(argv)
    if args.table:
        print(recipes_table(json.loads(RESULTS.read_text())))
        return 0
    bench = load_bench(
        args.workdir / "data" / "ingested.csv", args.workdir, [GUNMAP, L0], prefix_of=PREFIX
    )
    results: dict[str, Any] = {"machine": platform.node(), "draws": args.draws}
    score_recipes(bench, with_seed_1([TODAY, GUNMAP_RECIPE], args.seeds), results, RESULTS, args)
    print(recipes_table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
