"""A tuned cascade's composite score: the second head alone past the gate (the product's) or the
mean logit of both stages — on the same 1,000 draws as `bundle_draws.py`, from cached embeddings.

The product's cascade replaces the first stage's score past the gate with the second head's. With
a fine-tuned first stage that lost 2.4 points (`bundle_draws_tuned_cascade.json`); this asks
whether combining the two stages' logits instead would pay. Bench only: nothing is retrained,
the bundle's two heads score the held-out pool of its workdir (tuned and second-backbone
embeddings from the workdir's cache).

    PYTHONPATH=src python bench/tuned_cascade_composite.py --workdir work-tc
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import logit

sys.path.insert(0, str(Path(__file__).parent))
from bundle_draws import draw_sizes, held_out
from certified_workload import _origin, run_draws
from photosieve.bundle import ModelBundle, cascade_scores
from photosieve.learn.logits import gated_scores, probabilities
from photosieve.learn.train import embed_manifest
from photosieve.scoring import backbone_for

RESULTS = Path(__file__).parent / "results" / "tuned_cascade_composite.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True, help="a tuned cascade's workdir")
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    bundle = ModelBundle.load(args.workdir / "bundle")  # registers the tuned backbone
    refiner = bundle.refiner
    if refiner is None:
        raise SystemExit(f"{args.workdir}/bundle is not a cascade")
    rows, y = held_out(args.workdir)
    X = embed_manifest(rows, workdir=args.workdir, backbone=backbone_for(bundle.backbone_id),
                       progress=False)  # fmt: skip
    X2 = embed_manifest(rows, workdir=args.workdir, backbone=backbone_for(refiner.backbone_id),
                        progress=False)  # fmt: skip
    first = np.asarray(bundle.head.score(X))
    second = np.asarray(refiner.head.score(np.concatenate([X, X2], axis=1).astype(np.float32)))
    eps = 1e-12  # scores saturate at 0/1 in float64
    mean = probabilities(
        (logit(np.clip(first, eps, 1 - eps)) + logit(np.clip(second, eps, 1 - eps))) / 2
    )
    variants = {
        "first stage alone": first,
        "second head past the gate (the product's)": cascade_scores(
            first, refiner, X, lambda rows: X2[rows]
        ),
        "mean logit of both past the gate": gated_scores(first, refiner.gate, lambda r: mean[r]),
        "mean logit of both, no gate": mean,
    }
    sizes = draw_sizes(y)
    origin = _origin(rows["origin"].to_numpy())
    results: dict[str, Any] = {"workdir": str(args.workdir), "draws": args.draws, "variants": {}}
    base: np.ndarray | None = None
    for name, scores in variants.items():
        r = run_draws(scores, y, origin, sizes, draws=args.draws, seed=1, targets=(0.99,),
                      keep_draws=True)["0.99"]  # fmt: skip
        per_draw = np.array(r.pop("review_draws"))
        base = per_draw if base is None else base
        r["vs_first_stage"] = {
            "mean_difference": float((per_draw - base).mean()),
            "share_lower": float((per_draw < base).mean()),
        }
        results["variants"][name] = r
        review = r["review_prev1pct"]
        print(f"{name}: mean {review['mean']:.1%}, median {review['median']:.1%}, p90 "
              f"{review['p90']:.1%}, floor {r['floor_prev1pct']:.1%}, pool violation "
              f"{r['violation_rate_pool']:.3f}, vs first stage "
              f"{r['vs_first_stage']['mean_difference']:+.1%}")  # fmt: skip
    args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
