"""A two-stage cascade, estimated from `tile_workload.py`'s out-of-fold scores (issue 11).

Stage 1 is today's Lite0@224 model on every photo; a photo it scores below a *gate* is approved
at once, the rest (most of the positives' neighbourhood) are scored by a heavier stage 2 — tiles,
Lite0 at 384 px next to the 224-px view, or Lite2@224 — whose score is certified. The composite
score is stage 2's where stage 1 passed the gate, else 0, so the exact certificate of
`policy/certify.py` covers the whole rule (a positive stopped by the gate is a miss it counts),
provided the gate is fixed before calibration: it is chosen on folds 0–1 of the OOF scores (stage
1 passes all but a `q` share of their positives) and everything is measured on folds 2–4 only,
with 1,000 calibration/test draws at the workload plan's sizes (so the draws overlap more than in
`certified_workload.py`: their mean is comparable, their spread is understated). Reported: the
share of uploads at 1% prevalence that reach stage 2 and the model CPU a photo (stage 1 + share ×
stage 2, from `tile_workload.py`'s same-run `model_cpu`) next to the certified review rate of
stage 1 alone, stage 2 alone (on Lite0 + features: its full cost) and the cascades.

    PYTHONPATH=src python bench/tile_workload.py --workdir work --seeds \
        --features tiles384 whole384 --backbones efficientnet_lite2_224_avgmax   # the OOF cache
    PYTHONPATH=src python bench/cascade_workload.py --workdir work
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from certified_workload import _origin, plan_sizes, run_draws
from oof_scores import Recipe, fold_of, load_bench, oof_scores
from photosieve.data.plan import plan_by_workload
from recipe_runs import with_seed_1
from shortcut_check import L0
from tile_workload import RESULTS as TILE_RESULTS
from tile_workload import recipes_for

RESULTS = Path(__file__).parent / "results" / "cascade_workload.json"
TUNE_FOLDS, EVAL_FOLDS = (0, 1), (2, 3, 4)
GATES = (0.002, 0.005)  # share of the tuning folds' positives stage 1 may stop
STAGE2_COST = {  # stage 2's extra model CPU, in `tile_workload.json`'s `model_cpu` names
    "lite0_tiles384_mlp1": "tiles384 (4 tiles)",
    "lite0_whole384_mlp1": "whole384",
    "lite2_224_avgmax_mlp1": "efficientnet_lite2_224_avgmax",
}


def review_summary(r: dict[str, Any]) -> dict[str, float]:
    """Mean / median / p90 of the certified review rate at 1% and the pool violation rate."""
    review = r["review_prev1pct"]
    return {k: float(review[k]) for k in ("mean", "median", "p90")} | {
        "violation_pool": float(r["violation_rate_pool"])
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("work"))
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    bench = load_bench(args.workdir / "data" / "ingested.csv", args.workdir, [])  # labels only
    frame, y = bench.frame, bench.y
    plan = plan_by_workload(int(y[bench.primary].sum()))[0]
    sizes = plan_sizes(bench, plan, seed=args.seed)
    fold = fold_of(bench, 5, args.seed)
    tune = bench.primary & np.isin(fold, TUNE_FOLDS)
    ev = bench.primary & np.isin(fold, EVAL_FOLDS)
    origin = _origin(frame["origin"].to_numpy()[ev])
    cpu = json.loads(TILE_RESULTS.read_text())["model_cpu"]
    both = recipes_for(["tiles384", "whole384"], ["efficientnet_lite2_224_avgmax"])
    recipes = {r.name: r for r in with_seed_1(both, seeds=True)}

    def scores(recipe: Recipe) -> np.ndarray:
        got, _ = oof_scores(bench, recipe, plan, seed=args.seed,
                            cache_dir=args.workdir / "certified_workload")  # fmt: skip
        return got

    def certified(s: np.ndarray) -> dict[str, float]:
        drawn = run_draws(s[ev], y[ev], origin, sizes, draws=args.draws, seed=args.seed)
        return review_summary(drawn["0.99"])

    results: dict[str, Any] = {"sizes": sizes, "draws": args.draws, "gates": GATES, "seeds": {}}
    for suffix, head in (("", "mlp1"), ("s1", "mlp1s1")):
        first = scores(recipes[f"lite0_mlp1{suffix}"])
        seed_results: dict[str, Any] = {"lite0 alone": {"cost": 1.0, **certified(first)}}
        gates = {}  # q → (gate, passed (N,), stage-2 share of uploads at 1% prevalence)
        for q in GATES:
            gate = float(np.quantile(first[tune & (y == 1)], q))
            passed = first >= gate
            share = 0.01 * passed[ev & (y == 1)].mean() + 0.99 * passed[ev & (y == 0)].mean()
            gates[q] = (gate, passed, float(share))
        for name, cost_name in STAGE2_COST.items():
            extra = float(cpu[cost_name]["over_lite0_224"])
            stage2 = recipes[f"{name}{suffix}"]
            second = scores(stage2)
            alone_cost = extra + (1.0 if L0 in stage2.backbones else 0.0)
            seed_results[f"{name} alone"] = {"cost": alone_cost, **certified(second)}
            for q, (gate, passed, share) in gates.items():
                seed_results[f"cascade lite0 → {name}, gate q={q}"] = {
                    "gate": gate,
                    "stage2_share_prev1pct": share,
                    "gate_recall_eval": float(passed[ev & (y == 1)].mean()),
                    "cost": 1.0 + share * extra,
                    **certified(np.where(passed, second, 0.0)),
                }
        results["seeds"][head] = seed_results
        for row, r in seed_results.items():
            print(f"{head:7s} {row:58s} cost {r['cost']:.2f}x  mean {r['mean']:.3f}  "
                  f"p90 {r['p90']:.3f}  violation {r['violation_pool']:.3f}")  # fmt: skip
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
