"""The headline benchmark: the certified review rate at 1% prevalence, before vs after.

Scores: cross-fitted out-of-fold scores for every primary photo (`oof_scores.py`: K folds over
duplicate groups, the full training recipe per fold with its own early-stopping slice, external
icons in training only; training and validation shares follow the split plan being measured).

Draws: ≥ 1,000 random calibration/test pairs of the plan's split sizes (primary positives and
negatives of its calibration and test splits) drawn without replacement from the OOF pool. On
each, `RecallCertifier` sets the certified approve threshold from the calibration part; on the
test part we measure recall and the review rate at 1% prevalence
(`0.01·P(review|offensive) + 0.99·P(review|ok)`). Reported per target (99/98/95% at 95%
confidence): review-rate mean, median, p90; the violation rate (test recall < target; and
against the whole pool, the draw's "population"); the point-estimate floor (review rate at
exactly the target recall on the pool); AP; and per origin (recall of positives, share of fine
photos reviewed, share of draws in which the origin's pool recall falls below the target).

"before" = today's recipe (Lite0 avg+max, 5-seed MLP ensemble) with today's planner (299 + 10%
calibration positives); "after" = the chosen recipe (on validation figures, never the draws)
with the workload planner (`plan_by_workload`). Candidates are listed in RECIPES.

Cost: today's 5-seed MLP ensemble is ≈ 2.7 CPU-s per epoch per member on 2,560-d inputs, so
its cross-fit is ≈ 2,000 CPU-s per plan; `--before lite0_mlp1` (the same head config, one seed)
is 5× cheaper. The slow cross-fits can run as separate processes first (`--oof-only`); the
main run then reads them from the cache (`work/certified_workload/`).

    PYTHONPATH=src python bench/certified_workload.py --oof-only lite0_mlp5:before --jobs 2
    PYTHONPATH=src python bench/certified_workload.py [--before lite0_mlp5] [--explore ...]
    PYTHONPATH=src python bench/certified_workload.py --table   # README tables from the JSON
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from oof_scores import Bench, Recipe, load_bench, oof_scores
from photosieve.config import Workdir
from photosieve.data.plan import plan_by_workload, plan_fractions
from photosieve.data.split import assign_splits
from photosieve.learn.metrics import average_precision, review_rate_at_recall
from photosieve.policy.certify import RecallCertifier
from photosieve.records import Split

TARGETS = (0.99, 0.98, 0.95)
CONFIDENCE, PREVALENCE = 0.95, 0.01
RESULTS = Path(__file__).parent / "results" / "certified_workload.json"
L0, L2 = "efficientnet_lite0_avgmax", "efficientnet_lite2_avgmax"
L2_224 = "efficientnet_lite2_224_avgmax"  # Lite2 at Lite0's input size: ≈ 2.2× Lite0's CPU
# Recipes the 2-core box can serve within the limits (≥ 60 photos/s end to end, ≤ 50 ms
# for one photo): one backbone of at most ≈ 2.2× Lite0's CPU. Lite2@260 (≈ 3×) and the
# concatenations (≈ 3–4×) are measured, but "after" is picked among servable recipes only.
SERVABLE_BACKBONES = frozenset({L0, L2_224})
BEFORE = Recipe("lite0_mlp5", (L0,), "mlp5")
RECIPES = {  # explored on validation folds; the after recipe is picked from these
    r.name: r
    for r in (
        BEFORE,
        Recipe("lite0_mlp1", (L0,), "mlp1"),
        Recipe("lite0_logreg", (L0,), "logreg"),
        Recipe("lite2_logreg", (L2,), "logreg"),
        Recipe("concat_logreg", (L0, L2), "logreg"),
        Recipe("lite2_mlp5", (L2,), "mlp5"),
        Recipe("concat_mlp5", (L0, L2), "mlp5"),
        # Lite2 embeddings of the primary photos only (the icons did not fit the CPU budget):
        Recipe("lite0_mlp1_noext", (L0,), "mlp1", external=False),
        Recipe("lite2_mlp1_noext", (L2,), "mlp1", external=False),
        Recipe("concat_mlp1_noext", (L0, L2), "mlp1", external=False),
        Recipe("lite2_224_mlp1", (L2_224,), "mlp1"),
    )
}


def plan_sizes(bench: Bench, plan: dict[Split, float], seed: int = 0) -> dict[str, int]:
    """Primary positives/negatives the plan puts in calibration and test (the draw sizes)."""
    split = assign_splits(bench.frame, plan, seed=seed).to_numpy()
    out = {}
    for name in (Split.CALIBRATION.value, Split.TEST.value):
        part = (split == name) & bench.primary
        out[f"{name}_pos"] = int(bench.y[part].sum())
        out[f"{name}_neg"] = int((part & (bench.y == 0)).sum())
    return out


def _origin(frame_origin: np.ndarray) -> np.ndarray:
    return np.array([o.split("/")[0] for o in frame_origin])


class Draw(NamedTuple):
    """One calibration/test draw and the threshold certified on its calibration part."""

    threshold: float
    pos_order: np.ndarray  # the positives' rows, shuffled: calibration part first, then test
    neg_order: np.ndarray  # the same for the negatives
    test_pos: np.ndarray  # rows of the test part
    test_neg: np.ndarray
    recall: float  # of the test part at the threshold
    review: float  # share of the test part reviewed at 1% prevalence


def certified_draws(
    scores: np.ndarray,
    y: np.ndarray,
    sizes: dict[str, int],
    *,
    draws: int,
    rng: np.random.Generator,
    target: float,
) -> Iterator[Draw]:
    """`draws` random calibration/test parts of `sizes` from the pool (`scores`, `y`), each
    certified by `RecallCertifier` and measured on its test part. `rng` is shared with the
    caller, so what it draws between two draws keeps its place in the stream."""
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    cp, cn = sizes["calibration_pos"], sizes["calibration_neg"]
    tp, tn = sizes["test_pos"], sizes["test_neg"]
    for _ in range(draws):
        p, n = rng.permutation(pos), rng.permutation(neg)
        cal = np.r_[p[:cp], n[:cn]]
        t = RecallCertifier(target, CONFIDENCE).fit(scores[cal], y[cal]).threshold_
        test_p, test_n = p[cp : cp + tp], n[cn : cn + tn]
        recall = float((scores[test_p] >= t).mean())
        fpr = float((scores[test_n] >= t).mean())
        review = PREVALENCE * recall + (1 - PREVALENCE) * fpr
        yield Draw(t, p, n, test_p, test_n, recall, review)


def run_draws(
    scores: np.ndarray,
    y: np.ndarray,
    origin: np.ndarray,
    sizes: dict[str, int],
    *,
    draws: int,
    seed: int,
    targets: tuple[float, ...] = TARGETS,
    keep_draws: bool = False,
) -> dict[str, Any]:
    """Certify on each random calibration part, measure on its test part (and the pool).
    `keep_draws` adds each draw's review rate (`review_draws`), for paired comparisons."""
    rng = np.random.default_rng(seed)
    pos = np.flatnonzero(y == 1)
    origins = sorted(set(origin))
    out: dict[str, Any] = {}
    for target in targets:
        rows: list[dict[str, Any]] = []
        for d in certified_draws(scores, y, sizes, draws=draws, rng=rng, target=target):
            t, test_p, test_n = d.threshold, d.test_pos, d.test_neg
            row = {
                "review": d.review,
                "recall": d.recall,
                "pool_recall": float((scores[pos] >= t).mean()),
            }
            for o in origins:
                op, on = test_p[origin[test_p] == o], test_n[origin[test_n] == o]
                pool_o = pos[origin[pos] == o]
                row[f"{o}:recall"] = float((scores[op] >= t).mean()) if op.size else np.nan
                row[f"{o}:pool_recall"] = (
                    float((scores[pool_o] >= t).mean()) if pool_o.size else np.nan
                )
                row[f"{o}:fine_reviewed"] = float((scores[on] >= t).mean()) if on.size else np.nan
            rows.append(row)
        out[f"{target:g}"] = summarise(rows, target, origins, scores, y, origin)
        if keep_draws:
            out[f"{target:g}"]["review_draws"] = [r["review"] for r in rows]
    return out


def summarise(
    rows: list[dict[str, Any]],
    target: float,
    origins: list[str],
    scores: np.ndarray,
    y: np.ndarray,
    origin: np.ndarray,
) -> dict[str, Any]:
    review = np.array([r["review"] for r in rows])
    recall = np.array([r["recall"] for r in rows])
    pool_recall = np.array([r["pool_recall"] for r in rows])
    per_origin: dict[str, Any] = {}
    for o in origins:
        mask = origin == o
        n_pos, n_neg = int(y[mask].sum()), int((mask & (y == 0)).sum())
        entry: dict[str, Any] = {"positives": n_pos, "negatives": n_neg}
        if n_pos:
            pr = np.array([r[f"{o}:pool_recall"] for r in rows])
            tr = np.array([r[f"{o}:recall"] for r in rows], dtype=float)
            entry |= {
                "recall_mean": float(np.nanmean(tr)),
                "pool_recall_mean": float(pr.mean()),
                "pool_recall_p10": float(np.quantile(pr, 0.1)),
                "below_target_share": float((pr < target).mean()),
                "ap_vs_all_negatives": average_precision(
                    scores[mask | (y == 0)], y[mask | (y == 0)]
                ),
            }
        if n_neg:
            entry["fine_reviewed_mean"] = float(np.nanmean([r[f"{o}:fine_reviewed"] for r in rows]))
        per_origin[o] = entry
    return {
        "review_prev1pct": {
            "mean": float(review.mean()),
            "median": float(np.median(review)),
            "p90": float(np.quantile(review, 0.9)),
        },
        "violation_rate_test": float((recall < target).mean()),
        "violation_rate_pool": float((pool_recall < target).mean()),
        "test_recall_mean": float(recall.mean()),
        "floor_prev1pct": review_rate_at_recall(scores, y, recall=target, prevalence=PREVALENCE),
        "per_origin": per_origin,
    }


def measure(
    bench: Bench,
    recipe: Recipe,
    plan: dict[Split, float],
    label: str,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """OOF scores for (recipe, plan) → draws at the plan's sizes → figures."""
    scores, info = oof_scores(
        bench, recipe, plan, k=args.folds, seed=args.seed, jobs=args.jobs, cache_dir=args.cache
    )
    mask = bench.primary
    s, y = scores[mask], bench.y[mask]
    origin = _origin(bench.frame["origin"].to_numpy()[mask])
    sizes = plan_sizes(bench, plan, seed=args.seed)
    started = time.perf_counter()
    result = {
        "label": label,
        "recipe": info,
        "plan": {k.value: v for k, v in plan.items()},
        "sizes": sizes,
        "ap": average_precision(s, y),
        "targets": run_draws(s, y, origin, sizes, draws=args.draws, seed=args.seed + 1),
    }
    result["draw_seconds"] = time.perf_counter() - started
    print_row(label, result)
    return result | {"_plan": plan}


def empirical_curve(
    result: dict[str, Any], bench: Bench, args: argparse.Namespace, positives: list[int]
) -> list[dict[str, Any]]:
    """Certified review at 99% for other calibration sizes, same OOF scores and test size.

    Isolates the calibration side of the planner's trade (training is held fixed), as a check
    of its Beta(k+1, n−k) model on real scores.
    """
    scores, _ = oof_scores(
        bench,
        RECIPES[args.before],
        result["_plan"],
        k=args.folds,
        seed=args.seed,
        cache_dir=args.cache,
    )
    mask = bench.primary
    s, y = scores[mask], bench.y[mask]
    origin = _origin(bench.frame["origin"].to_numpy()[mask])
    base = result["sizes"]
    ratio = base["calibration_neg"] / base["calibration_pos"]
    rows = []
    for n in positives:
        sizes = dict(base, calibration_pos=n, calibration_neg=round(n * ratio))
        if n + sizes["test_pos"] > int(y.sum()):
            continue
        t = run_draws(s, y, origin, sizes, draws=args.draws, seed=args.seed + 2, targets=(0.99,))
        t99 = t["0.99"]
        rows.append(
            {
                "calibration_positives": n,
                **t99["review_prev1pct"],
                "violation_rate_test": t99["violation_rate_test"],
                "violation_rate_pool": t99["violation_rate_pool"],
            }
        )
        print(f"  calibration {n:>5}: review mean {t99['review_prev1pct']['mean']:.3f}", flush=True)
    return rows


def print_row(label: str, r: dict[str, Any]) -> None:
    t = r["targets"]["0.99"]
    rv = t["review_prev1pct"]
    print(
        f"{label:<28} cal+{r['sizes']['calibration_pos']:>5}  AP {r['ap']:.4f}  "
        f"review mean {rv['mean']:.3f} median {rv['median']:.3f} p90 {rv['p90']:.3f}  "
        f"viol {t['violation_rate_test']:.3f}/{t['violation_rate_pool']:.3f}  "
        f"floor {t['floor_prev1pct']:.3f}  "
        f"val {r['recipe']['validation']['review_at_99_prev1pct']:.3f}",
        flush=True,
    )


def validation_table(
    runs: dict[str, tuple[float, dict[str, Any]]], first: str = "recipe"
) -> list[str]:
    """README rows shared by the recipe benches: name → (validation review @99%, its draws)."""
    lines = [
        f"| {first} | validation review @99% | target | review @1%: mean | median | p90 "
        "| violation: test part | pool | floor | AP |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, (val, r) in runs.items():
        for target, t in r["targets"].items():
            lines.append(f"| {name} | {val:.1%} | {float(target):.0%} | {_draw_cells(t, r['ap'])}")
    return lines


def _draw_cells(t: dict[str, Any], ap: float) -> str:
    """A target's draw figures as the tables' last cells: review @1% mean, median, p90, the
    violation rates (test part, pool), the floor and the AP."""
    rv = t["review_prev1pct"]
    return (
        f"{rv['mean']:.1%} | {rv['median']:.1%} | {rv['p90']:.1%} | "
        f"{t['violation_rate_test']:.3f} | {t['violation_rate_pool']:.3f} | "
        f"{t['floor_prev1pct']:.1%} | {ap:.4f} |"
    )


def markdown(results: dict[str, Any]) -> str:
    """The README tables from a results file."""
    runs = {"before": results["before"], "planner only": results["planner_only"]}
    runs |= {f"{k}, new plan": v for k, v in results["explored"].items()}
    lines = [
        "| run | target | cal. positives | review @1%: mean | median | p90 | violation: test "
        "part | pool | floor | AP |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in runs.items():
        for target, t in r["targets"].items():
            lines.append(
                f"| {name} | {float(target):.0%} | {r['sizes']['calibration_pos']:,} | "
                f"{_draw_cells(t, r['ap'])}"
            )
    lines += [
        "",
        "| run | origin | positives | negatives | recall (test parts) | pool recall "
        "p10 | draws below 99% | fine photos reviewed |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in runs.items():
        for origin, o in r["targets"]["0.99"]["per_origin"].items():
            rec = f"{o['recall_mean']:.4f}" if "recall_mean" in o else "—"
            p10 = f"{o['pool_recall_p10']:.4f}" if "pool_recall_p10" in o else "—"
            below = f"{o['below_target_share']:.3f}" if "below_target_share" in o else "—"
            fine = f"{o['fine_reviewed_mean']:.1%}" if "fine_reviewed_mean" in o else "—"
            lines.append(
                f"| {name} | {origin} | {o['positives']:,} | {o['negatives']:,} | {rec} | {p10} "
                f"| {below} | {fine} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ingested", type=Path, default=Workdir.default().ingested)
    parser.add_argument("--workdir", type=Path, default=Path("work"))
    parser.add_argument("--cache", type=Path, default=Path("work/certified_workload"))
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--after", default="", help="recipe for 'after' [default: best on val]")
    parser.add_argument(
        "--before", default=BEFORE.name, help="today's recipe (lite0_mlp1: one seed, cheaper)"
    )
    parser.add_argument("--explore", nargs="*", default=None, help="recipes to explore")
    parser.add_argument(
        "--oof-only",
        default="",
        help="RECIPE:before|after — only compute (and cache) those OOF scores, then exit "
        "(lets the slow MLP cross-fits run as parallel processes)",
    )
    parser.add_argument(
        "--primary-only-lite2", action="store_true", help="Lite2 embeddings of primary photos only"
    )
    parser.add_argument("--table", action="store_true", help="print the README tables and exit")
    args = parser.parse_args(argv)
    if args.table:
        print(markdown(json.loads(RESULTS.read_text())))
        return 0
    if args.oof_only:
        name, _, which = args.oof_only.partition(":")
        primary_only = [L2] if args.primary_only_lite2 else []
        bench = load_bench(args.ingested, args.workdir, RECIPES[name].backbones, primary_only)
        n_pos = int(bench.y[bench.primary].sum())
        plan = plan_fractions(n_pos) if which == "before" else plan_by_workload(n_pos)[0]
        _, info = oof_scores(
            bench,
            RECIPES[name],
            plan,
            k=args.folds,
            seed=args.seed,
            jobs=args.jobs,
            cache_dir=args.cache,
        )
        print(json.dumps(info["validation"]), f"{info['seconds']:.0f} s")
        return 0

    explore = list(RECIPES) if args.explore is None else args.explore
    backbones = sorted(
        {b for name in [*explore, args.after or args.before] for b in RECIPES[name].backbones}
    )
    primary_only = [L2] if args.primary_only_lite2 else []
    bench = load_bench(args.ingested, args.workdir, backbones, primary_only)
    n_pos = int(bench.y[bench.primary].sum())
    before_plan = plan_fractions(n_pos)
    after_plan, choice, _ = plan_by_workload(n_pos)
    results: dict[str, Any] = {"machine": platform.node(), "draws": args.draws}
    today = RECIPES[args.before]
    results["before"] = measure(bench, today, before_plan, f"before ({today.name})", args)
    results["planner_only"] = measure(bench, today, after_plan, f"{today.name}, new plan", args)
    explored = {}
    for name in explore:
        if name == today.name:
            continue
        explored[name] = measure(bench, RECIPES[name], after_plan, f"{name}, new plan", args)
    results["explored"] = explored
    candidates = {today.name: results["planner_only"]}
    candidates |= {
        n: r for n, r in explored.items() if set(RECIPES[n].backbones) <= SERVABLE_BACKBONES
    }
    pick = args.after or min(
        candidates, key=lambda n: candidates[n]["recipe"]["validation"]["review_at_99_prev1pct"]
    )
    results["after_recipe"] = pick
    results["after_rule"] = (
        "lowest mean validation review rate at 99% recall among servable recipes "
        f"(backbones within {sorted(SERVABLE_BACKBONES)})"
    )
    results["after"] = candidates[pick]
    results["planner_choice"] = {"positives": choice.positives, "misses": choice.misses}
    sizes = [305, 483, 641, 789, 932, 1070, 1339, 1600]
    results["calibration_curve_before_scores"] = empirical_curve(
        results["before"], bench, args, sizes
    )
    for r in (results["before"], results["planner_only"], *explored.values()):
        r.pop("_plan", None)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    print(f"after = {pick} ({results['after_rule']}); wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
