"""Checks the recall guarantee instead of assuming it: many calibration/test pairs, five methods.

Each trial draws a fresh calibration set, fits every threshold method on it, and measures the
chosen threshold on the *population* the calibration set was drawn from (an infinitely large
fresh test set: exact Beta CDFs for the synthetic model, the whole score pool for the real
scores). A trial violates the target when that test recall is below it; a method with a
(1−δ)-guarantee must violate in at most a share δ of trials. Review rate = share of photos not
auto-approved (score ≥ threshold), at the calibration mix and at a 1% production prevalence.

Scenarios:
  synthetic — scores of positives ~ Beta(6, 1.2), negatives ~ Beta(0.6, 8), 8.5% offensive;
  real      — resampling (with replacement) the bench bundle's scores on held-out primary rows
              (`work/bundle` scored on the calibration and test rows of
              `work/data/split.csv`), calibration sets the size of the real calibration split;
              when those artefacts exist.

Methods: photosieve (`RecallCertifier`), threshold 0.5, sklearn `TunedThresholdClassifierCV`
(default objective, prefit), the point estimate at the target recall from
`precision_recall_curve`, and MAPIE's `BinaryClassificationController` (risk="recall",
fwer_method="fixed_sequence", 1,000-point grid fine near 0).

    .venv/bin/python bench/guarantee.py [--trials 1000] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

TARGET_RECALL, CONFIDENCE, PREVALENCE = 0.99, 0.95, 0.01
CAL_SIZE, CAL_PREVALENCE = 6000, 0.085
METHODS = ("photosieve", "threshold_0.5", "tuned_threshold_cv", "pr_curve_point", "mapie_fst")
MAPIE_GRID = np.unique(np.r_[np.linspace(0.0, 0.99, 500), np.geomspace(1e-6, 0.99, 500)])
RESULTS = Path(__file__).parent / "results" / "guarantee.json"


@dataclass(frozen=True)
class Population:
    """Where calibration sets come from; `recall`/`review` are exact for a threshold."""

    name: str
    sample: Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray]]
    pos_survival: Callable[[float], float]  # P(score ≥ t | offensive)
    neg_survival: Callable[[float], float]  # P(score ≥ t | ok)
    prevalence: float
    cal_size: int = CAL_SIZE


def synthetic_population() -> Population:
    pos, neg = stats.beta(6.0, 1.2), stats.beta(0.6, 8.0)

    def sample(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        n_pos = rng.binomial(CAL_SIZE, CAL_PREVALENCE)
        scores = np.r_[rng.beta(6.0, 1.2, n_pos), rng.beta(0.6, 8.0, CAL_SIZE - n_pos)]
        return scores, np.r_[np.ones(n_pos, bool), np.zeros(CAL_SIZE - n_pos, bool)]

    # Scores are continuous: P(score ≥ t) = sf(t).
    return Population(
        "synthetic", sample, lambda t: float(pos.sf(t)), lambda t: float(neg.sf(t)), CAL_PREVALENCE
    )


def pool_population(scores: np.ndarray, labels: np.ndarray, cal_size: int) -> Population:
    """Bootstrap population: the empirical distribution of a real score pool."""
    pos, neg = np.sort(scores[labels]), np.sort(scores[~labels])
    prevalence = pos.size / scores.size

    def sample(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        idx = rng.integers(0, scores.size, cal_size)
        return scores[idx], labels[idx]

    def survival(sorted_scores: np.ndarray) -> Callable[[float], float]:
        return lambda t: 1.0 - np.searchsorted(sorted_scores, t, "left") / sorted_scores.size

    return Population("real", sample, survival(pos), survival(neg), prevalence, cal_size)


class _ScoreColumn:
    """A prefit 'classifier' whose probability is the score column: lets sklearn tune on scores."""

    classes_ = np.array([0, 1])
    _estimator_type = "classifier"

    def fit(self, X: np.ndarray, y: np.ndarray) -> _ScoreColumn:
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        s = np.asarray(X, dtype=float)[:, 0]
        return np.c_[1.0 - s, s]

    def predict(self, X: np.ndarray) -> np.ndarray:
        return (np.asarray(X)[:, 0] >= 0.5).astype(int)

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {}

    def __sklearn_tags__(self) -> Any:
        from sklearn.utils import ClassifierTags, Tags, TargetTags

        return Tags(
            estimator_type="classifier",
            target_tags=TargetTags(required=True),
            classifier_tags=ClassifierTags(),
        )


def fit_thresholds(scores: np.ndarray, labels: np.ndarray) -> dict[str, float | None]:
    """Every method's review-from threshold (review iff score ≥ t); None = refused."""
    from mapie.risk_control import BinaryClassificationController
    from sklearn.metrics import precision_recall_curve
    from sklearn.model_selection import TunedThresholdClassifierCV

    from photosieve.policy.certify import InsufficientPositivesError, RecallCertifier

    out: dict[str, float | None] = {"threshold_0.5": 0.5}
    try:
        certifier = RecallCertifier(TARGET_RECALL, CONFIDENCE).fit(scores, labels)
        out["photosieve"] = certifier.threshold_
    except InsufficientPositivesError:
        out["photosieve"] = None
    y = labels.astype(int)
    tuned = TunedThresholdClassifierCV(_ScoreColumn(), cv="prefit", refit=False)
    out["tuned_threshold_cv"] = float(tuned.fit(scores[:, None], y).best_threshold_)
    _, recall, thresholds = precision_recall_curve(y, scores)
    ok = np.flatnonzero(recall[:-1] >= TARGET_RECALL)  # recall[i] pairs with thresholds[i]
    out["pr_curve_point"] = float(thresholds[ok.max()])
    controller = BinaryClassificationController(
        predict_function=lambda X: np.c_[1.0 - X[:, 0], X[:, 0]],
        risk="recall",
        target_level=TARGET_RECALL,
        confidence_level=CONFIDENCE,
        best_predict_param_choice="predicted_positive_fraction",
        list_predict_params=MAPIE_GRID,
        fwer_method="fixed_sequence",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        controller.calibrate(scores[:, None], y)
    best = controller.best_predict_param
    out["mapie_fst"] = None if best is None else float(best)  # type: ignore[arg-type]
    return out


def run_trials(population: Population, seeds: list[int]) -> list[dict[str, Any]]:
    """One row per (trial, method): test recall and review rates of the fitted threshold."""
    rows = []
    for seed in seeds:
        scores, labels = population.sample(np.random.default_rng(seed))
        for method, t in fit_thresholds(scores, labels).items():
            refused = t is None
            t_eff = 0.0 if t is None else t  # refusing = review everything
            recall = population.pos_survival(t_eff)
            neg_review = population.neg_survival(t_eff)
            rows.append(
                {
                    "seed": seed,
                    "method": method,
                    "threshold": t_eff,
                    "refused": refused,
                    "test_recall": recall,
                    "review_rate_mix": population.prevalence * recall
                    + (1 - population.prevalence) * neg_review,
                    "review_rate_1pct": PREVALENCE * recall + (1 - PREVALENCE) * neg_review,
                }
            )
    return rows


def summarise(rows: list[dict[str, Any]], n_trials: int) -> dict[str, dict[str, Any]]:
    delta = 1 - CONFIDENCE
    out = {}
    for method in METHODS:
        mine = [r for r in rows if r["method"] == method]
        violations = sum(r["test_recall"] < TARGET_RECALL for r in mine)
        lo, hi = stats.binomtest(violations, len(mine)).proportion_ci(0.95, method="exact")
        out[method] = {
            "trials": len(mine),
            "violation_rate": violations / len(mine),
            "violation_rate_ci95": [lo, hi],
            "holds_guarantee": bool(lo <= delta),  # not significantly above δ
            "mean_test_recall": float(np.mean([r["test_recall"] for r in mine])),
            "mean_review_rate_at_calibration_mix": float(
                np.mean([r["review_rate_mix"] for r in mine])
            ),
            "mean_review_rate_at_1pct": float(np.mean([r["review_rate_1pct"] for r in mine])),
            "refused": int(sum(r["refused"] for r in mine)),
            "mean_threshold": float(np.mean([r["threshold"] for r in mine])),
        }
    assert all(v["trials"] == n_trials for v in out.values())
    by_seed = {(r["seed"], r["method"]): r["threshold"] for r in rows}
    seeds = {r["seed"] for r in rows}
    out["photosieve"]["share_of_trials_approving_at_least_as_much_as_mapie"] = float(
        np.mean([by_seed[(k, "photosieve")] >= by_seed[(k, "mapie_fst")] for k in seeds])
    )
    out["photosieve"]["reviews_no_more_than_mapie"] = bool(
        out["photosieve"]["mean_review_rate_at_1pct"]
        <= out["mapie_fst"]["mean_review_rate_at_1pct"]
    )
    return out


def real_pool(
    workdir: Path, bundle: Path | None = None
) -> tuple[np.ndarray, np.ndarray, int] | None:
    """Scores/labels of the bench bundle on held-out primary rows (calibration + test) and the
    calibration split's size, or None when the bundle is not built yet."""
    from photosieve.config import Workdir

    bundle_dir = bundle or Workdir(workdir).bundle
    split_csv = Workdir(workdir).split
    if not (bundle_dir / "bundle.json").is_file() or not split_csv.is_file():
        return None
    from photosieve.data.manifest import read_manifest
    from photosieve.scoring import score_rows

    df = read_manifest(split_csv)
    held_out = df[(df["source"] == "primary") & df["split"].isin(["calibration", "test"])]
    scores = score_rows(bundle_dir, held_out, workdir=workdir)
    n_cal = int((held_out["split"] == "calibration").sum())
    return scores, (held_out["label"] == "offensive").to_numpy(), n_cal


def run_scenario(population: Population, n_trials: int, jobs: int, seed0: int) -> dict[str, Any]:
    from joblib import Parallel, delayed

    seeds = list(range(seed0, seed0 + n_trials))
    chunks = [seeds[i::jobs] for i in range(jobs)]
    start = time.perf_counter()
    parts = Parallel(n_jobs=jobs)(delayed(run_trials)(population, c) for c in chunks)
    rows = [r for part in parts for r in part]
    return {
        "population": population.name,
        "trials": n_trials,
        "calibration_size": population.cal_size,
        "population_prevalence": population.prevalence,
        "seconds": time.perf_counter() - start,
        "methods": summarise(rows, n_trials),
    }


def print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"{result['population']}: {result['trials']} trials, target recall "
        f"{TARGET_RECALL} at {CONFIDENCE:.0%} (δ = {1 - CONFIDENCE:.2f})"
    )
    for col in (
        "method",
        "violation rate [95% CI]",
        "mean test recall",
        "review rate (cal mix)",
        "review rate (π = 1%)",
        "refused",
    ):
        table.add_column(col, justify="left" if col == "method" else "right")
    for method, m in result["methods"].items():
        lo, hi = m["violation_rate_ci95"]
        table.add_row(
            method,
            f"{m['violation_rate']:.3f} [{lo:.3f}, {hi:.3f}]",
            f"{m['mean_test_recall']:.4f}",
            f"{m['mean_review_rate_at_calibration_mix']:.4f}",
            f"{m['mean_review_rate_at_1pct']:.4f}",
            str(m["refused"]),
        )
    Console(width=140).print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--bundle", type=Path, default=None, help="default <workdir>/bundle")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--scenario",
        choices=("all", "synthetic", "real"),
        default="all",
        help="run only one scenario (the others already in --out are kept)",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from photosieve.config import Workdir
    from photosieve.paths import default_workdir

    scenarios = []
    if args.scenario in ("all", "synthetic"):
        scenarios.append(run_scenario(synthetic_population(), args.trials, args.jobs, 0))
        print_table(scenarios[0])
    workdir = args.workdir or default_workdir()
    pool = real_pool(workdir, args.bundle) if args.scenario != "synthetic" else None
    if args.scenario == "synthetic":
        pass
    elif pool is None:
        print("real scores: work/bundle or work/data/split.csv missing — skipped")
    else:
        scenarios.append(run_scenario(pool_population(*pool), args.trials, args.jobs, 10**6))
        scenarios[-1]["pool_size"] = int(pool[0].size)
        scenarios[-1]["pool_positives"] = int(pool[1].sum())
        scenarios[-1]["pool"] = "bench bundle scores on primary calibration + test rows"
        scenarios[-1]["bundle"] = str(args.bundle or Workdir(workdir).bundle)
        print_table(scenarios[-1])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.scenario != "all" and args.out.is_file():
        ran = {s["population"] for s in scenarios}
        kept = json.loads(args.out.read_text()).get("scenarios", [])
        scenarios = [s for s in kept if s["population"] not in ran] + scenarios
    payload = {
        "target_recall": TARGET_RECALL,
        "confidence": CONFIDENCE,
        "production_prevalence": PREVALENCE,
        "mapie_grid_points": int(MAPIE_GRID.size),
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "jobs": args.jobs,
        },
        "scenarios": scenarios,
    }
    args.out.write_text(json.dumps(payload, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
