"""The cascade as `photosieve train --refine-backbone` builds it, measured out of fold (issue 11).

`cascade_workload.py` estimated a cascade from earlier OOF scores with the gate fixed on folds
0–1. This bench measures the recipe the product ships (`config.CASCADE_BACKBONES`,
`pipeline._fit_refiner`) the same way `certified_workload.py` measures one model:

- stage 1: Lite0 avg+max at 224 px from a photo decoded for 384 px
  (`efficientnet_lite0_avgmax_d384`), today's head config;
- stage 2: the same head config on [stage-1 embedding, Lite0 avg+max at 384 px]
  (`efficientnet_lite0_384_avgmax`), fitted on the same training rows with early stopping on the
  same validation slice;
- the gate, per fold, set by `learn.train.cascade_gate` itself on the fold's validation slice
  (it passes `--shares` of the validation negatives on, and stops at most `refine_stop` of its
  positives) — fixed before calibration, so the composite score (stage 2's past the gate, else
  0) is certified by the exact method with every stopped positive counted as a miss.

All five folds' OOF composite scores → 1,000 calibration/test draws at the workload plan's sizes
(as the headline), next to today's Lite0@224 recipe in the same run. Stage-2 share of uploads at
1% prevalence and model CPU a photo (one onnxruntime thread, `tile_workload.model_costs`, same
run) give the cascade's cost as a ratio to Lite0@224.

    PYTHONPATH=src python bench/cascade_product.py --workdir work --seeds
    PYTHONPATH=src python bench/cascade_product.py --workdir work --heads mlp5 \
        --out bench/results/cascade_product_mlp5.json     # with the product's 5-seed heads
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from certified_workload import _origin, plan_sizes, run_draws
from oof_scores import Recipe, fold_of, load_bench, oof_scores
from photosieve.config import CASCADE_BACKBONES, DEFAULT_BACKBONE, TrainConfig
from photosieve.data.plan import plan_by_workload
from photosieve.learn.metrics import average_precision
from photosieve.learn.train import cascade_gate
from photosieve.records import Label, Split
from recipe_runs import add_recipe_arguments
from tile_workload import model_costs

RESULTS = Path(__file__).parent / "results" / "cascade_product.json"
FIRST, SECOND = CASCADE_BACKBONES


def gate_per_fold(
    info: dict[str, Any], fold: np.ndarray, first: np.ndarray, share: float, stop: float
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """(N,) bool: past its fold's gate, set by the product's own rule (`learn.train.cascade_gate`)
    on that fold's validation slice; and each fold's gate record."""
    passed = np.zeros(len(first), dtype=bool)
    rules = []
    for f, (scores, labels) in enumerate(
        zip(info["validation_scores_per_fold"], info["validation_labels_per_fold"], strict=True)
    ):
        label = np.where(np.asarray(labels) == 1, Label.OFFENSIVE.value, Label.OK.value)
        val = pd.DataFrame({"label": label, "split": Split.VALIDATION.value})
        gate, rule = cascade_gate(np.asarray(scores), val, share=share, stop=stop)
        rows = fold == f
        passed[rows] = first[rows] >= gate
        rules.append(rule | {"gate": gate})
    return passed, rules


def figures(scores: np.ndarray, y: np.ndarray, origin: np.ndarray, sizes: dict[str, int],
            args: argparse.Namespace) -> dict[str, Any]:  # fmt: skip
    drawn = run_draws(scores, y, origin, sizes, draws=args.draws, seed=args.seed + 1)
    return {"ap": average_precision(scores, y), "targets": drawn}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_recipe_arguments(parser)
    parser.add_argument("--shares", type=float, nargs="+", default=[TrainConfig().refine_share])
    parser.add_argument("--heads", nargs="+", default=None,
                        help="head recipes (`oof_scores.make_head`; default mlp1, with --seeds "
                        "also mlp1s1; mlp5 = the product's 5-seed ensemble)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.table:
        print(table(json.loads(args.out.read_text())))
        return 0
    bench = load_bench(args.workdir / "data" / "ingested.csv", args.workdir,
                       [DEFAULT_BACKBONE, FIRST, SECOND])  # fmt: skip
    plan = plan_by_workload(int(bench.y[bench.primary].sum()))[0]
    sizes = plan_sizes(bench, plan, seed=args.seed)
    fold = fold_of(bench, args.folds, args.seed)
    mask = bench.primary
    y, origin = bench.y[mask], _origin(bench.frame["origin"].to_numpy()[mask])
    cost = model_costs(args.workdir, [SECOND])
    extra = float(cost[SECOND]["over_lite0_224"])
    results: dict[str, Any] = {"sizes": sizes, "draws": args.draws, "model_cpu": cost, "runs": {}}
    cache = args.workdir / "certified_workload"
    heads = args.heads or (["mlp1", "mlp1s1"] if args.seeds else ["mlp1"])
    for head in heads:

        def oof(name: str, backbones: tuple[str, ...]) -> tuple[np.ndarray, dict[str, Any]]:
            recipe = Recipe(f"{name}_{head}", backbones, head)  # noqa: B023
            return oof_scores(bench, recipe, plan, k=args.folds, seed=args.seed, jobs=args.jobs,
                              cache_dir=cache)  # fmt: skip

        today, _ = oof("lite0", (DEFAULT_BACKBONE,))
        first, info = oof("lite0d384", (FIRST,))
        second, _ = oof("lite0d384_384", (FIRST, SECOND))
        run: dict[str, Any] = {
            "today (Lite0@224)": {"cost": 1.0, **figures(today[mask], y, origin, sizes, args)},
            "stage 1 alone (Lite0@224, decoded for 384)": {
                "cost": 1.0, **figures(first[mask], y, origin, sizes, args)},
            "stage 2 alone (Lite0@224 + Lite0@384)": {
                "cost": 1.0 + extra, **figures(second[mask], y, origin, sizes, args)},
        }  # fmt: skip
        for share in args.shares:
            passed, rules = gate_per_fold(info, fold, first, share, TrainConfig().refine_stop)
            composite = np.where(passed, second, 0.0)
            load = 0.01 * passed[mask & (bench.y == 1)].mean() + 0.99 * passed[
                mask & (bench.y == 0)].mean()  # fmt: skip
            run[f"cascade, share {share:g}"] = {
                "gates": rules,
                "stage2_share_prev1pct": float(load),
                "positives_stopped": int((~passed & mask & (bench.y == 1)).sum()),
                "cost": 1.0 + float(load) * extra,
                **figures(composite[mask], y, origin, sizes, args),
            }
        results["runs"][head] = run
        for name, r in run.items():
            t = r["targets"]["0.99"]
            print(f"{head:7s} {name:45s} cost {r['cost']:.2f}x  mean "
                  f"{t['review_prev1pct']['mean']:.3f}  p90 {t['review_prev1pct']['p90']:.3f}  "
                  f"floor {t['floor_prev1pct']:.3f}  viol {t['violation_rate_pool']:.3f}",
                  flush=True)  # fmt: skip
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))
    print(table(results))
    return 0


def table(results: dict[str, Any]) -> str:
    """The README rows: certified review @1% at 99% recall, per head seed."""
    lines = ["| head | rule | model CPU (× Lite0@224) | mean | median | p90 | floor | "
             "violation (pool) | AP |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for head, run in results["runs"].items():
        for name, r in run.items():
            t = r["targets"]["0.99"]
            review = t["review_prev1pct"]
            lines.append(
                f"| {head} | {name} | {r['cost']:.2f} | {review['mean']:.1%} | "
                f"{review['median']:.1%} | {review['p90']:.1%} | {t['floor_prev1pct']:.1%} | "
                f"{t['violation_rate_pool']:.3f} | {r['ap']:.4f} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
