"""Certified thresholds against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from sklearn.exceptions import NotFittedError

from photosieve.policy.certify import (
    InsufficientPositivesError,
    PrecisionCertifier,
    RecallCertifier,
    certify_policy,
    cp_lower,
    cp_upper,
    min_positives,
)
from photosieve.records import Decision


def test_known_beta_quantiles() -> None:
    # 0 events in n: the upper bound is 1 − δ^(1/n) exactly.
    assert cp_upper(0, 299, 0.05) == pytest.approx(1 - 0.05 ** (1 / 299), rel=1e-12)
    assert float(cp_upper(0, 299, 0.05)) <= 0.01 < float(cp_upper(0, 298, 0.05))
    # n events in n: the lower bound is δ^(1/n).
    assert cp_lower(10, 10, 0.05) == pytest.approx(0.05 ** (1 / 10), rel=1e-12)
    # 3 misses in 100: the textbook one-sided 95% bound is 0.0757.
    assert float(cp_upper(3, 100, 0.05)) == pytest.approx(0.07570, abs=5e-5)
    # Definition: P(Binomial(n, u) ≤ k) = δ at the upper bound u.
    u = float(cp_upper(7, 500, 0.05))
    assert stats.binom.cdf(7, 500, u) == pytest.approx(0.05, rel=1e-8)
    assert cp_upper(5, 5, 0.05) == 1.0 and cp_lower(0, 5, 0.05) == 0.0


def test_min_positives_matches_log_formula() -> None:
    assert min_positives(0.99, 0.95) == 299
    assert min_positives(0.95, 0.95) == math.ceil(math.log(0.05) / math.log(0.95))
    assert min_positives(0.999, 0.99) == math.ceil(math.log(0.01) / math.log(0.999))


def test_299_positives_with_no_miss_certify_99_95() -> None:
    pos = np.linspace(0.5, 1.0, 299)
    neg = np.linspace(0.0, 0.6, 1000)
    scores, labels = np.r_[pos, neg], np.r_[np.ones(299), np.zeros(1000)]
    cert = RecallCertifier(0.99, 0.95).fit(scores, labels)
    assert cert.n_positives_ == 299 and cert.n_misses_ == 0 and cert.max_misses_ == 0
    # No miss allowed: the threshold is the lowest positive score (which stays unapproved).
    assert cert.threshold_ == 0.5
    assert cert.observed_recall_ == 1.0
    assert cert.recall_lower_bound_ == pytest.approx(0.05 ** (1 / 299), rel=1e-12)
    assert cert.recall_lower_bound_ >= 0.99
    # Negatives below the lowest positive are all approved.
    assert cert.approved_negative_rate_ == pytest.approx(np.mean(neg < 0.5))


def test_298_positives_are_refused_naming_the_shortfall() -> None:
    scores = np.r_[np.full(298, 0.9), np.full(50, 0.1)]
    labels = np.r_[np.ones(298), np.zeros(50)]
    with pytest.raises(InsufficientPositivesError, match="needs 299; add 1 more") as info:
        RecallCertifier(0.99, 0.95).fit(scores, labels)
    assert info.value.n_missing == 1
    assert isinstance(info.value, ValueError)


def test_allowed_misses_follow_the_binomial() -> None:
    # With 1000 positives the largest m with P(Bin(1000, 0.01) ≤ m) ≤ 0.05 is 4.
    n = 1000
    m_star = max(m for m in range(20) if stats.binom.cdf(m, n, 0.01) <= 0.05)
    pos = np.arange(1, n + 1) / (n + 1)  # distinct, ascending
    cert = RecallCertifier().fit(pos, np.ones(n, dtype=bool))
    assert cert.max_misses_ == m_star == 4
    assert cert.threshold_ == pos[m_star]  # the 5th lowest positive: 4 are approved (missed)
    assert cert.n_misses_ == 4 and cert.observed_recall_ == pytest.approx(0.996)
    assert cert.recall_lower_bound_ >= 0.99


def test_ties_never_exceed_the_allowed_misses() -> None:
    # Positives 0.1 (×3), 0.2 (×3), then 994 at 0.9: 4 misses allowed but the 4th-5th lowest
    # are a tie at 0.2, so t = 0.2 approves only the three at 0.1 (moving past 0.2 misses 6).
    pos = np.r_[np.full(3, 0.1), np.full(3, 0.2), np.full(994, 0.9)]
    neg = np.array([0.05, 0.15, 0.19, 0.2, 0.5])
    scores = np.r_[pos, neg]
    labels = np.r_[np.ones(pos.size), np.zeros(neg.size)].astype(bool)
    cert = RecallCertifier().fit(scores, labels)
    assert cert.threshold_ == 0.2
    assert cert.n_misses_ == 3 and cert.max_misses_ == 4
    assert cert.approved_negative_rate_ == pytest.approx(3 / 5)  # 0.05, 0.15, 0.19


def test_string_labels_and_validation() -> None:
    pos = np.full(300, 0.8)
    scores = np.r_[pos, [0.1, 0.2]]
    labels = ["offensive"] * 300 + ["ok", "ok"]
    assert RecallCertifier().fit(scores, labels).threshold_ == 0.8
    with pytest.raises(ValueError, match="unknown labels"):
        RecallCertifier().fit(scores, ["bad"] * 302)
    with pytest.raises(ValueError, match="within \\[0, 1\\]"):
        RecallCertifier().fit(np.r_[pos, [1.5, 0.2]], labels)
    with pytest.raises(ValueError, match="target_recall"):
        RecallCertifier(target_recall=1.0).fit(scores, labels)
    with pytest.raises(NotFittedError):
        RecallCertifier().evidence()


def test_precision_certifier_reweights_by_prevalence() -> None:
    rng = np.random.default_rng(0)
    pos = rng.beta(8, 1, 3000)
    neg = rng.beta(1, 8, 30000)
    scores, labels = np.r_[pos, neg], np.r_[np.ones(pos.size), np.zeros(neg.size)]
    at_mix = PrecisionCertifier(0.9, 0.95, prevalence=None).fit(scores, labels)
    at_1pct = PrecisionCertifier(0.9, 0.95, prevalence=0.01).fit(scores, labels)
    assert at_mix.threshold_ is not None and at_1pct.threshold_ is not None
    # Rarer offensive photos → a stricter (higher) remove threshold for the same precision.
    assert at_1pct.threshold_ > at_mix.threshold_
    assert at_1pct.precision_lower_bound_ >= 0.9
    # 99% at 1% prevalence needs FPR ≤ ~1e-4: 30,000 negatives cannot bound it that tightly.
    strict = PrecisionCertifier(0.99, 0.95, prevalence=0.01).fit(scores, labels)
    assert strict.threshold_ is None and "no candidate" in strict.reason_
    # A tiny calibration set cannot certify even 90%.
    small = PrecisionCertifier(0.9, 0.95, prevalence=0.01).fit(scores[::50], labels[::50])
    assert small.threshold_ is None and "no candidate" in small.reason_


def test_certify_policy_builds_bands_with_evidence() -> None:
    rng = np.random.default_rng(1)
    pos = rng.beta(8, 1, 3000)
    neg = rng.beta(1, 8, 30000)
    scores, labels = np.r_[pos, neg], np.r_[np.ones(pos.size), np.zeros(neg.size)]
    policy = certify_policy(
        scores, labels, target_precision=0.9, source="split=calibration, source=primary"
    )
    assert policy.remove_at is not None and policy.remove_at >= policy.approve_below
    assert policy.evidence["recall"]["recall_lower_bound"] >= 0.99
    assert policy.evidence["calibration_source"].startswith("split=calibration")
    assert policy.decide(0.0) is Decision.APPROVE
    assert policy.decide(1.0) is Decision.REMOVE
    no_band = certify_policy(scores, labels, target_precision=None)
    assert no_band.remove_at is None and "precision" not in no_band.evidence


def test_positives_for_misses_matches_the_binomial() -> None:
    from photosieve.policy.certify import positives_for_misses

    assert positives_for_misses(0, 0.99, 0.95) == 299
    for m in (1, 2, 4):
        n = positives_for_misses(m, 0.99, 0.95)
        assert stats.binom.cdf(m, n, 0.01) <= 0.05 < stats.binom.cdf(m, n - 1, 0.01)
