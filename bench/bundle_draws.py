"""Trained product bundles re-certified on many calibration draws of their own held-out photos.

`certified_workload.py` and `cascade_product.py` judge *recipes* with out-of-fold heads (one
head seed, K folds). This bench judges the *bundles the product built* (`photosieve demo`, with
today's 5-seed ensemble heads): for each workdir, its bundle scores the primary photos of its
split's calibration and test parts (the photos its training never saw), and 1,000 random
calibration parts of the plan's size (1,070 positives + 3,293 negatives) are drawn from that pool;
each is certified by the exact method and its review rate at 1% prevalence measured on the rest.
The draws overlap (they share one pool of 1,665 positives), so the spread is understated; the
training split is one draw. Both workdirs must hold the same split (the demo's seed 0 does), so
every bundle meets the same draws: `paired` gives each pair's per-draw difference.

    PYTHONPATH=src python bench/bundle_draws.py --workdirs work work-cascade
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
from certified_workload import _origin, run_draws
from photosieve.bundle import ModelBundle
from photosieve.learn.logits import probabilities
from photosieve.records import PRIMARY_SOURCE, Label, Split
from photosieve.scoring import score_rows

RESULTS = Path(__file__).parent / "results" / "bundle_draws.json"
CALIBRATION = {"calibration_pos": 1070, "calibration_neg": 3293}  # the workload plan's sizes


def held_out(workdir: Path) -> tuple[pd.DataFrame, np.ndarray]:
    frame = pd.read_csv(workdir / "data" / "split.csv")
    parts = frame["split"].isin([Split.CALIBRATION.value, Split.TEST.value])
    rows = frame[parts & (frame["source"] == PRIMARY_SOURCE)].reset_index(drop=True)
    return rows, (rows["label"] == Label.OFFENSIVE.value).to_numpy().astype(np.int64)


def draw_sizes(y: np.ndarray) -> dict[str, int]:
    """The plan's calibration part; the rest of the held-out pool `y` is the test part."""
    return CALIBRATION | {
        "test_pos": int(y.sum()) - CALIBRATION["calibration_pos"],
        "test_neg": int((y == 0).sum()) - CALIBRATION["calibration_neg"],
    }


def paired(per_draw: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Each pair of bundles on the *same* draws (same pool rows, same seed): the second's review
    rate minus the first's, per draw — the spread a one-pool comparison has, beyond the means."""
    out = {}
    names = list(per_draw)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            d = per_draw[second] - per_draw[first]
            out[f"{second} vs {first}"] = {
                "mean_difference": float(d.mean()),
                "share_second_lower": float((d < 0).mean()),
                "p5": float(np.quantile(d, 0.05)),
                "p95": float(np.quantile(d, 0.95)),
            }
    return out


def mean_logit(scores: list[np.ndarray], *, eps: float) -> np.ndarray:
    """P(offensive) of the mean logit of several models' scores (an ensemble), each score first
    kept `eps` inside (0, 1) — float32 sigmoids reach 0 and 1 exactly (eps 1e-7), the product's
    float64 scores only nearly (1e-15)."""
    p = np.clip(np.asarray(scores, dtype=np.float64), eps, 1 - eps)
    return probabilities(np.mean(np.log(p) - np.log1p(-p), axis=0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdirs", type=Path, nargs="+", required=True)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--mean-of", type=Path, nargs="*", default=[],
                        help="also certify the mean logit of these workdirs' bundles")  # fmt: skip
    args = parser.parse_args()
    results: dict[str, Any] = {"draws": args.draws, "bundles": {}}
    fingerprints = set()
    per_draw: dict[str, np.ndarray] = {}
    scored: dict[str, np.ndarray] = {}

    def certify(name: str, scores: np.ndarray, y: np.ndarray, origin: np.ndarray) -> dict[str, Any]:
        drawn = run_draws(
            scores, y, origin, draw_sizes(y), draws=args.draws, seed=1, targets=(0.99,),
            keep_draws=True,
        )  # fmt: skip
        r = drawn["0.99"]
        per_draw[name] = np.array(r.pop("review_draws"))
        review = r["review_prev1pct"]
        print(f"{name}: mean {review['mean']:.1%}, median {review['median']:.1%}, "
              f"p90 {review['p90']:.1%}, floor {r['floor_prev1pct']:.1%}, "
              f"pool violation {r['violation_rate_pool']:.3f}")  # fmt: skip
        return dict(r)

    for workdir in args.workdirs:
        bundle = ModelBundle.load(workdir / "bundle")
        fingerprints.add(bundle.data_fingerprint)
        rows, y = held_out(workdir)
        scores = scored[str(workdir)] = score_rows(bundle, rows, workdir=workdir, progress=False)
        origin = _origin(rows["origin"].to_numpy())
        r = certify(str(workdir), scores, y, origin)
        results["bundles"][str(workdir)] = {
            "version": bundle.version,
            "backbone": bundle.backbone_id,
            "cascade": bundle.refiner.meta() if bundle.refiner is not None else None,
            "pool": {"positives": int(y.sum()), "negatives": int((y == 0).sum())},
            **r,
        }
    if len(fingerprints) > 1:
        raise SystemExit("the workdirs were trained on different data; compare like with like")
    if args.mean_of:  # each bundle's cost added up: the serving CPU of all of them
        missing = [str(w) for w in args.mean_of if str(w) not in scored]
        if missing:
            raise SystemExit(f"--mean-of {missing}: not among --workdirs")
        name = "mean logit of " + " + ".join(str(w) for w in args.mean_of)
        r = certify(name, mean_logit([scored[str(w)] for w in args.mean_of], eps=1e-15), y, origin)
        results["bundles"][name] = {"pool": results["bundles"][str(workdir)]["pool"], **r}
    results["paired"] = paired(per_draw)
    for pair, row in results["paired"].items():
        print(f"{pair}: mean difference {row['mean_difference']:+.1%}, second lower in "
              f"{row['share_second_lower']:.0%} of draws (p5 {row['p5']:+.1%}, "
              f"p95 {row['p95']:+.1%})")  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=float))


if __name__ == "__main__":
    main()
