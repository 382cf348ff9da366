"""The production recall certificate: exact count bounds, coverage with a known truth, the
confidence sequence, and the threshold scan for a candidate re-scored on production photos."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from photosieve.policy.production import (
    ProductionEvidence,
    anytime_recall_bound,
    binomial_count_upper,
    certify_threshold,
    recall_bound,
)


def test_binomial_count_upper_is_the_exact_largest_plausible_count() -> None:
    for k, p, cap in ((0, 0.1, 500), (3, 0.05, 2_000), (7, 0.5, 40), (2, 0.02, 10)):
        upper = binomial_count_upper(k, p, cap, 0.05)
        brute = max(m for m in range(k, cap + 1) if stats.binom.cdf(k, m, p) > 0.05)
        assert upper == brute
    assert binomial_count_upper(4, 1.0, 100, 0.05) == 4  # a census: the count is known
    with pytest.raises(ValueError, match="only"):
        binomial_count_upper(5, 0.5, 4, 0.05)


def _world(
    rng: np.random.Generator, n: int, prevalence: float, audit: float, *, dependent: bool
) -> tuple[ProductionEvidence, float]:
    y = rng.random(n) < prevalence
    s = np.where(y, rng.beta(3, 2, n), rng.beta(2, 8, n))
    review = s >= 0.3
    p = np.where(s >= 0.15, min(1.0, 4 * audit), audit) if dependent else np.full(n, audit)
    p = np.where(review, 1.0, p)
    labelled = review | (rng.random(n) < p)
    return ProductionEvidence(s, p, labelled, y & labelled), float((y & review).sum() / y.sum())


@pytest.mark.parametrize("dependent", [False, True], ids=["uniform", "score-dependent"])
def test_coverage_with_a_known_truth(dependent: bool) -> None:
    """Dense audits make the bound tight, so coverage is tested near its edge, not trivially."""
    rng = np.random.default_rng(7)
    trials = 200
    fixed = anytime = 0
    for _ in range(trials):
        ev, truth = _world(rng, 4_000, 0.05, 0.4, dependent=dependent)
        fixed += recall_bound(ev, 0.3).recall_lower_bound <= truth
        anytime += anytime_recall_bound(ev, 0.3).recall_lower_bound <= truth
    assert fixed / trials >= 0.95
    assert anytime / trials >= 0.95


def test_the_bound_counts_census_and_audits_and_tightens_with_audits() -> None:
    rng = np.random.default_rng(3)
    sparse, _ = _world(rng, 20_000, 0.02, 0.05, dependent=False)
    dense, _ = _world(np.random.default_rng(3), 20_000, 0.02, 0.5, dependent=False)
    b_sparse, b_dense = recall_bound(sparse, 0.3), recall_bound(dense, 0.3)
    assert b_sparse.recall_lower_bound < b_dense.recall_lower_bound <= 1.0
    assert b_dense.caught == int((dense.labelled & dense.offensive & (dense.scores >= 0.3)).sum())
    assert b_dense.census_misses == 0  # census photos are all above the live threshold
    # the anytime-valid bound pays for looking after every batch: never tighter
    assert anytime_recall_bound(dense, 0.3).recall_lower_bound <= b_dense.recall_lower_bound


def test_candidate_threshold_scan_rewards_a_better_ranking() -> None:
    rng = np.random.default_rng(11)
    ev, _ = _world(rng, 30_000, 0.02, 0.5, dependent=False)
    live = certify_threshold(ev, target_recall=0.9)
    assert live is not None and live.recall_lower_bound >= 0.9
    # A candidate that ranks every offensive photo higher certifies a higher threshold.
    better = ev.rescored(np.where(ev.offensive, np.maximum(ev.scores, 0.6), ev.scores))
    cand = certify_threshold(better, target_recall=0.9)
    assert cand is not None and cand.threshold > live.threshold
    # No threshold certifies an impossible target on this evidence.
    assert certify_threshold(ev, target_recall=0.9999) is None


def test_evidence_is_validated() -> None:
    s = np.array([0.1, 0.9])
    with pytest.raises(ValueError, match="census"):
        ProductionEvidence(s, np.array([0.1, 1.0]), np.array([False, False]), np.zeros(2, bool))
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        ProductionEvidence(s, np.array([0.0, 1.0]), np.array([False, True]), np.zeros(2, bool))
