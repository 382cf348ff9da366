"""Does the certified recall hold on photos from a source no training photo came from? (issue 11)

The certificate is a statement about photos drawn like the calibration photos. A forum's next
uploads may come from elsewhere (new phones, a new meme style, another community joining), and
the issue saw the certified threshold's recall fall to 97.3% on photos from other sources. This
bench measures that gap on the bench itself, by leaving one positive origin out entirely:

- **held out**: every photo of origin O (e.g. all 2,646 `granada-pistols` handguns) is removed
  from the bench; the rest is cross-fitted exactly as `certified_workload.py` does (K folds over
  duplicate groups, the recipe's head per fold, external icons in training only, the workload
  planner's shares for the smaller bench), and each of O's photos is scored by one fold's head
  (a random one: a single head, like every out-of-fold score, never an average of heads);
- **seen** (the peer, same run): the whole bench cross-fitted and drawn from, so O's photos are
  in training and in calibration alike, as the product's own split puts them.

Then ≥ 1,000 calibration/test draws at the plan's sizes from the in-source pool: each draw's
certified threshold (`RecallCertifier`, 99% / 95%) is applied to O's photos. Reported per held-out
origin: O's recall at the certified threshold (mean, p10, share of draws below 99%) held out vs
seen, the in-source test recall and the review rate at 1% prevalence of the draws, and the
in-source pool violation rate (which must stay ≤ 5%: the certificate is honest where it applies).

    PYTHONPATH=src python bench/source_holdout.py --ingested work/data/ingested.csv --workdir work
    PYTHONPATH=src python bench/source_holdout.py --table
    PYTHONPATH=src python bench/source_holdout.py --backbone efficientnet_lite1_avgmax \
        --out bench/results/source_holdout_lite1.json   # another backbone's cached embeddings
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from certified_workload import L0, PREVALENCE, certified_draws, plan_sizes
from oof_scores import Bench, Extras, Recipe, load_bench, oof_scores_with_extras
from photosieve.data.plan import plan_by_workload
from photosieve.learn.metrics import average_precision
from photosieve.policy.drift import assess, reference_distribution
from photosieve.service.config import Settings

RESULTS = Path(__file__).parent / "results" / "source_holdout.json"
HOLDOUTS = ("granada-pistols", "roboflow-weapons", "caltech101/revolver")


def _matches(origin: np.ndarray, holdout: str) -> np.ndarray:
    """Rows whose origin is `holdout` or lies under it (`granada-pistols` → `granada-pistols/…`)."""
    return np.array([o == holdout or o.startswith(holdout + "/") for o in origin])


def _subset(bench: Bench, keep: np.ndarray) -> Bench:
    return Bench(
        frame=bench.frame.loc[keep].reset_index(drop=True),
        y=bench.y[keep],
        primary=bench.primary[keep],
        features={b: f[keep] for b, f in bench.features.items()},
    )


def draws(
    pool: np.ndarray,
    y: np.ndarray,
    sizes: dict[str, int],
    probe: np.ndarray,
    *,
    n: int,
    seed: int,
    target: float,
) -> dict[str, np.ndarray]:
    """Per draw: the certified threshold on a calibration part of (`pool`, `y`); the test
    part's recall and review rate at 1% prevalence; the pool's recall; the share of `probe`
    photos at or above it, and where the probe's misses sit among the approved scores; whether
    the service's drift alarm (`policy.drift.assess` with the service's defaults, scores only:
    no audits yet) fires on a window of uploads at 1% prevalence whose offensive photos are the
    probe's (`alarm`) or the in-source pool's (`false_alarm`), its fine photos drawn from the
    pool's photos outside the calibration part."""
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    cp, cn = sizes["calibration_pos"], sizes["calibration_neg"]
    keys = ("review", "recall", "pool_recall", "probe", "alarm", "false_alarm", "top_decile")
    out: dict[str, list[float]] = {k: [] for k in keys}
    window = int(Settings.model_fields["drift_window"].default)
    n_pos = max(1, round(PREVALENCE * window))
    for d in certified_draws(pool, y, sizes, draws=n, rng=rng, target=target):
        t, p, q = d.threshold, d.pos_order, d.neg_order
        out["review"].append(d.review)
        out["recall"].append(d.recall)
        out["pool_recall"].append(float((pool[pos] >= t).mean()))
        out["probe"].append(float((probe >= t).mean()))
        # where audits would find the probe's misses: the share of them among the top tenth of
        # approved fine photos by score (0.1 if misses were spread like the approvals)
        approved_ok, missed = pool[neg][pool[neg] < t], probe[probe < t]
        top = np.quantile(approved_ok, 0.9) if approved_ok.size else t
        out["top_decile"].append(float((missed >= top).mean()) if missed.size else np.nan)
        cal = np.r_[p[:cp], q[:cn]]
        reference = reference_distribution(
            pool[cal], y[cal], prevalence=PREVALENCE, approve_below=t, remove_at=None
        )
        negatives = rng.choice(pool[q[cn:]], window - n_pos)  # not calibration photos
        for key, offensive in (("alarm", probe), ("false_alarm", pool[p[cp:]])):
            uploads = np.r_[negatives, rng.choice(offensive, n_pos)]
            out[key].append(float(_alarm(reference, uploads, target)))
    return {k: np.asarray(v) for k, v in out.items()}


def _alarm(reference: dict[str, Any], uploads: np.ndarray, target: float) -> bool:
    """The service's score-based drift verdict on `uploads` (its default limits)."""
    fields = Settings.model_fields
    return assess(
        reference, uploads, recall_upper=None, target_recall=target,
        min_uploads=int(fields["drift_min_uploads"].default),
        psi_limit=float(fields["drift_psi_limit"].default),
        band_p_value=float(fields["drift_band_p_value"].default),
    ).raised  # fmt: skip


def _summary(d: dict[str, np.ndarray], target: float) -> dict[str, float]:
    return {
        "probe_recall_mean": float(d["probe"].mean()),
        "probe_recall_p10": float(np.quantile(d["probe"], 0.1)),
        "probe_below_target_share": float((d["probe"] < target).mean()),
        "in_source_test_recall_mean": float(d["recall"].mean()),
        "in_source_pool_violation_rate": float((d["pool_recall"] < target).mean()),
        "review_prev1pct_mean": float(d["review"].mean()),
        "review_prev1pct_p90": float(np.quantile(d["review"], 0.9)),
        "probe_misses_in_top_decile_of_approved": float(np.nanmean(d["top_decile"])),
        "drift_alarm_share": float(d["alarm"].mean()),
        "drift_false_alarm_share": float(d["false_alarm"].mean()),
    }


def measure(bench: Bench, recipe: Recipe, holdout: str, args: argparse.Namespace) -> dict[str, Any]:
    """`holdout` left out vs seen, on `args.draws` draws each."""
    origin = bench.frame["origin"].to_numpy()
    out_rows = _matches(origin, holdout) & bench.primary
    if not out_rows.any():
        raise SystemExit(f"no primary photo of origin {holdout!r}")
    result: dict[str, Any] = {
        "holdout": holdout,
        "photos": int(out_rows.sum()),
        "positives": int(bench.y[out_rows].sum()),
    }
    for mode in ("held_out", "seen"):
        started = time.perf_counter()
        part = _subset(bench, ~out_rows) if mode == "held_out" else bench
        n_pos = int(part.y[part.primary].sum())
        plan = plan_by_workload(n_pos)[0]
        extras = None
        if mode == "held_out":  # each left-out photo scored by a random fold's head
            rng = np.random.default_rng(args.seed)
            anchors = rng.choice(np.flatnonzero(part.primary), size=int(out_rows.sum()))
            X_out = bench.design(recipe)[out_rows]
            extras = Extras(score={"probe": (X_out, anchors)}, tag=f"holdout-{holdout}")
        scores, extra, info = oof_scores_with_extras(
            part, recipe, plan, k=args.folds, seed=args.seed, jobs=args.jobs,
            cache_dir=args.cache, extras=extras,
        )  # fmt: skip
        mask = part.primary
        pool, y = scores[mask], part.y[mask]
        if mode == "held_out":
            probe = extra["probe"][bench.y[out_rows] == 1]
        else:  # O's own out-of-fold scores; O is in the calibration/test pool, as in the product
            probe = scores[
                _matches(part.frame["origin"].to_numpy(), holdout) & mask & (part.y == 1)
            ]
        sizes = plan_sizes(part, plan, seed=args.seed)
        per_target = {}
        for target in args.targets:
            d = draws(pool, y, sizes, probe, n=args.draws, seed=args.seed + 1, target=target)
            per_target[f"{target:g}"] = _summary(d, target)
        result[mode] = {
            "plan": {k.value: v for k, v in plan.items()},
            "sizes": sizes,
            "train_positives_per_fold": info["train_positives_per_fold"],
            "ap_probe_vs_negatives": average_precision(
                np.r_[probe, pool[y == 0]],
                np.r_[np.ones(len(probe)), np.zeros(int((y == 0).sum()))],
            ),
            "targets": per_target,
            "seconds": time.perf_counter() - started,
        }
        t99 = per_target.get("0.99", next(iter(per_target.values())))
        print(
            f"{holdout} {mode}: recall of its positives at the certified threshold "
            f"{t99['probe_recall_mean']:.4f} (p10 {t99['probe_recall_p10']:.4f}, below target in "
            f"{t99['probe_below_target_share']:.1%} of draws); in-source pool violation "
            f"{t99['in_source_pool_violation_rate']:.3f}, review {t99['review_prev1pct_mean']:.1%}",
            flush=True,
        )
    return result


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "| held-out origin (positives) | target | its recall: seen → held out (mean) | p10 | "
        "draws below target | in-source pool violation (held out) | review @1% (held out / seen) | "
        "score alarm: new source / unchanged |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["holdouts"]:
        for t, h in r["held_out"]["targets"].items():
            s = r["seen"]["targets"][t]
            lines.append(
                f"| {r['holdout']} ({r['positives']:,}) | {float(t):.0%} | "
                f"{s['probe_recall_mean']:.2%} → **{h['probe_recall_mean']:.2%}** | "
                f"{s['probe_recall_p10']:.2%} → {h['probe_recall_p10']:.2%} | "
                f"{s['probe_below_target_share']:.0%} → {h['probe_below_target_share']:.0%} | "
                f"{h['in_source_pool_violation_rate']:.3f} | "
                f"{h['review_prev1pct_mean']:.1%} / {s['review_prev1pct_mean']:.1%} | "
                f"{h['drift_alarm_share']:.1%} / {h['drift_false_alarm_share']:.1%} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ingested", type=Path, default=Path("work/data/ingested.csv"))
    parser.add_argument("--workdir", type=Path, default=Path("work"))
    parser.add_argument("--cache", type=Path, default=Path("work/source_holdout"))
    parser.add_argument("--holdouts", nargs="+", default=list(HOLDOUTS))
    parser.add_argument(
        "--head", default="mlp1", help="oof_scores head (mlp5 = today's, 5× slower)"
    )
    parser.add_argument("--targets", nargs="+", type=float, default=[0.99, 0.95])
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--backbone", default=L0, help="the recipe's backbone (cached embeddings)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--table", action="store_true", help="print the README table and exit")
    args = parser.parse_args(argv)
    out: Path = args.out
    if args.table:
        print(markdown(json.loads(out.read_text())))
        return 0
    short = args.backbone.removeprefix("efficientnet_").removesuffix("_avgmax")
    recipe = Recipe(f"{short}_{args.head}", (args.backbone,), args.head)
    bench = load_bench(args.ingested, args.workdir, recipe.backbones)
    results: dict[str, Any] = {
        "machine": platform.node(),
        "recipe": {"name": recipe.name, "backbones": list(recipe.backbones), "head": recipe.head},
        "draws": args.draws,
        "folds": args.folds,
        "seed": args.seed,
        "holdouts": [],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    for holdout in args.holdouts:  # written after each: a held-out fit takes ~10 min
        results["holdouts"].append(measure(bench, recipe, holdout, args))
        out.write_text(json.dumps(results, indent=2))
    print(markdown(results))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
