"""Coverage of the production recall certificate, by simulation with a known truth.

    .venv/bin/python bench/production_certificate.py [--trials 1000] [--out ...]

Each trial simulates weeks of uploads with a fixed live threshold: offensive photos at a given
prevalence, scores from two Beta distributions, the review band labelled in full (census), the
approved band audited with a known probability (uniform, or 4× higher in the upper half of the
approved band), optionally with drift (the offensive photos' scores slide down week by week, so
the true recall falls). After every week:

- the **anytime** bound (confidence sequence) on the cumulative recall is computed; a trial
  violates it if the bound exceeds the true cumulative recall at *any* week;
- at the end, the **fixed-time** exact bound; a trial violates it if it exceeds the true recall.

Coverage = 1 − violation rate; both must be ≥ the nominal 95% in every scenario. It also
answers the operator's question: how many audits a week certify 99% recall at a given volume
(prevalence 1%, a model whose true recall is 99.6%, expected counts, after 4 weeks).
Writes bench/results/production_certificate.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from photosieve.config import CERTIFY
from photosieve.policy.production import (
    ProductionEvidence,
    anytime_recall_bound,
    binomial_count_upper,
    recall_bound,
)

OUT = Path(__file__).parent / "results" / "production_certificate.json"
THRESHOLD = 0.3


@dataclass(frozen=True)
class Scenario:
    name: str
    prevalence: float
    audit_rate: float
    score_dependent: bool = False
    drift: float = 0.0  # per week: the offensive score Beta's first shape parameter drops by this
    weekly_uploads: int = 5_000
    weeks: int = 6


SCENARIOS = (
    Scenario("uniform, π=1%", 0.01, 0.05),
    Scenario("uniform, π=0.1%", 0.001, 0.2, weekly_uploads=20_000),
    Scenario("uniform, π=5%", 0.05, 0.02),
    Scenario("dense audits (tight bound), π=5%", 0.05, 0.5, weekly_uploads=2_000),
    Scenario("score-dependent, π=1%", 0.01, 0.03, score_dependent=True),
    Scenario("score-dependent, π=5%", 0.05, 0.02, score_dependent=True),
    Scenario("drift, uniform, π=1%", 0.01, 0.05, drift=0.25),
    Scenario("drift, score-dependent, π=1%", 0.01, 0.03, score_dependent=True, drift=0.25),
)


def _week(rng: np.random.Generator, sc: Scenario, week: int) -> tuple[np.ndarray, ...]:
    n = sc.weekly_uploads
    y = rng.random(n) < sc.prevalence
    a = max(0.6, 3.0 - sc.drift * week)
    s = np.where(y, rng.beta(a, 2.0, n), rng.beta(2.0, 8.0, n))
    review = s >= THRESHOLD
    p = np.full(n, sc.audit_rate)
    if sc.score_dependent:
        p = np.where(s >= THRESHOLD / 2, min(1.0, 4 * sc.audit_rate), sc.audit_rate)
    p = np.where(review, 1.0, p)
    labelled = review | (rng.random(n) < p)
    return s, p, labelled, y


def run_trial(rng: np.random.Generator, sc: Scenario, confidence: float) -> dict[str, float]:
    parts: list[tuple[np.ndarray, ...]] = []
    anytime_violated = False
    for week in range(sc.weeks):
        parts.append(_week(rng, sc, week))
        s, p, lab, y = (np.concatenate(x) for x in zip(*parts, strict=True))
        ev = ProductionEvidence(s, p, lab, y & lab)
        truth = float((y & (s >= THRESHOLD)).sum() / max(y.sum(), 1))
        bound = anytime_recall_bound(ev, THRESHOLD, confidence=confidence)
        anytime_violated |= bound.recall_lower_bound > truth
    fixed = recall_bound(ev, THRESHOLD, confidence=confidence)
    return {
        "true_recall": truth,
        "fixed_bound": fixed.recall_lower_bound,
        "anytime_bound": bound.recall_lower_bound,
        "fixed_violated": float(fixed.recall_lower_bound > truth),
        "anytime_violated": float(anytime_violated),
        "audits": float(np.count_nonzero(lab & (p < 1.0))),
    }


def simulate(sc: Scenario, trials: int, seed: int, confidence: float) -> dict[str, object]:
    rng = np.random.default_rng(seed)
    rows = [run_trial(rng, sc, confidence) for _ in range(trials)]

    def mean(key: str) -> float:
        return float(np.mean([r[key] for r in rows]))

    return {
        **asdict(sc),
        "trials": trials,
        "fixed_coverage": 1.0 - mean("fixed_violated"),
        "anytime_coverage": 1.0 - mean("anytime_violated"),
        "mean_true_recall": mean("true_recall"),
        "mean_fixed_bound": mean("fixed_bound"),
        "mean_anytime_bound": mean("anytime_bound"),
        "audits_per_week": mean("audits") / sc.weeks,
    }


def audits_needed(
    weekly_uploads: int,
    *,
    prevalence: float = CERTIFY.prevalence,
    true_recall: float = 0.996,
    review_share: float = 0.05,
    weeks: int = 4,
    target: float = CERTIFY.target_recall,
    confidence: float = CERTIFY.confidence,
) -> dict[str, float]:
    """Fewest uniform audits a week whose bound reaches `target` at expected counts."""
    n = weekly_uploads * weeks
    positives = n * prevalence
    caught = positives * true_recall
    missed = positives - caught
    approved = int(n * (1 - review_share))
    for rate in np.geomspace(1e-4, 1.0, 400):
        k = round(missed * rate)
        upper = binomial_count_upper(k, float(rate), approved, 1 - confidence)
        if caught / (caught + upper) >= target:
            return {"weekly_uploads": weekly_uploads, "audit_rate": float(rate),
                    "audits_per_week": float(rate * approved / weeks), "weeks": weeks,
                    "true_recall": true_recall}  # fmt: skip
    nan = float("nan")
    return {"weekly_uploads": weekly_uploads, "audit_rate": nan, "audits_per_week": nan,
            "weeks": weeks, "true_recall": true_recall}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    results = [simulate(sc, args.trials, args.seed + i, CERTIFY.confidence)
               for i, sc in enumerate(SCENARIOS)]  # fmt: skip
    volumes = [audits_needed(v) for v in (10_000, 100_000, 1_000_000, 10_000_000)]
    payload = {
        "confidence": CERTIFY.confidence,
        "threshold": THRESHOLD,
        "scenarios": results,
        "audits_needed_for_99pct": volumes,
        "seconds": time.perf_counter() - started,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2))
    print(f"{'scenario':32} {'fixed cov':>9} {'anytime cov':>11} {'true':>7} {'fixed LB':>8} "
          f"{'anytime LB':>10} {'audits/wk':>9}")  # fmt: skip
    for r in results:
        print(f"{r['name']:32} {r['fixed_coverage']:9.3f} {r['anytime_coverage']:11.3f} "
              f"{r['mean_true_recall']:7.4f} {r['mean_fixed_bound']:8.4f} "
              f"{r['mean_anytime_bound']:10.4f} {r['audits_per_week']:9.0f}")  # fmt: skip
    for v in volumes:
        print(
            f"{v['weekly_uploads']:>10,} uploads/week: audit {v['audit_rate']:.2%} of approved "
            f"= {v['audits_per_week']:,.0f} audits/week certify 99% in {v['weeks']} weeks"
        )
    print(f"wrote {args.out} in {payload['seconds']:.0f} s")


if __name__ == "__main__":
    main()
