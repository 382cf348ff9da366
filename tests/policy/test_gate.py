"""The promotion gate on seeded scores: passes a certified, no-worse candidate; refuses one that
cannot certify the target, one whose recall bound fails, and one that reviews more."""

from __future__ import annotations

import numpy as np
import pytest

from photosieve.policy.certify import min_positives
from photosieve.policy.gate import HeldOut, ShadowPeriod, gate
from photosieve.policy.production import ProductionEvidence

TARGET, CONF = 0.9, 0.9


def _held_out(n_pos: int, n_neg: int, seed: int = 0) -> HeldOut:
    rng = np.random.default_rng(seed)
    labels = np.array([True] * n_pos + [False] * n_neg)
    live = np.where(labels, rng.uniform(0.5, 1.0, labels.size), rng.uniform(0.0, 0.6, labels.size))
    candidate = np.where(
        labels, rng.uniform(0.6, 1.0, labels.size), rng.uniform(0.0, 0.4, labels.size)
    )
    return HeldOut(labels=labels, candidate_scores=candidate, live_scores=live)


def test_a_certified_candidate_that_reviews_less_passes() -> None:
    data = _held_out(60, 200)
    result = gate(0.55, 0.45, held_out=data, target_recall=TARGET, confidence=CONF)
    assert result.passed, result.messages
    (check,) = result.checks
    assert check.certified and check.recall_lower_bound >= TARGET
    assert check.candidate_review_rate < check.live_review_rate


def test_too_few_positives_cannot_certify() -> None:
    n = min_positives(TARGET, CONF) - 1
    result = gate(0.55, 0.45, held_out=_held_out(n, 50), target_recall=TARGET, confidence=CONF)
    assert not result.passed
    assert result.reasons == ["cannot_certify"]
    assert f"has {n} offensive photos" in result.messages[0]


def test_a_threshold_that_misses_too_many_positives_is_refused() -> None:
    data = _held_out(60, 200)
    result = gate(0.8, 0.45, held_out=data, target_recall=TARGET, confidence=CONF)
    assert "cannot_certify" in result.reasons
    assert result.checks[0].recall_lower_bound < TARGET


def test_a_candidate_that_reviews_more_is_refused_unless_within_tolerance() -> None:
    data = _held_out(60, 200)
    worse = gate(0.3, 0.45, held_out=data, target_recall=TARGET, confidence=CONF)
    assert worse.reasons == ["worse_review_rate"]
    check = worse.checks[0]
    assert check.candidate_review_rate > check.live_review_rate
    gap = check.candidate_review_rate - check.live_review_rate
    tolerant = gate(
        0.3, 0.45, held_out=data, target_recall=TARGET, confidence=CONF, tolerance=gap + 1e-9
    )
    assert tolerant.passed


def test_no_data_is_refused() -> None:
    assert gate(0.5, 0.5).reasons == ["no_labelled_data"]
    with pytest.raises(ValueError, match="tolerance"):
        gate(0.5, 0.5, tolerance=-0.1)


def _shadow(n_pos: int, missed: int, n_ok: int) -> ShadowPeriod:
    """A census of `n_pos` offensive photos (the candidate misses `missed`) and `n_ok` audited
    approvals, all labelled."""
    n = n_pos + n_ok
    offensive = np.array([True] * n_pos + [False] * n_ok)
    live = np.where(offensive, 0.9, 0.1)
    candidate = np.where(offensive, 0.8, 0.05)
    candidate[:missed] = 0.01
    inclusion = np.where(offensive, 1.0, 0.5)
    ev = ProductionEvidence(live, inclusion, np.ones(n, bool), offensive)
    return ShadowPeriod(ev, candidate, live, candidate)


def test_production_evidence_from_the_shadow_period_counts() -> None:
    enough = min_positives(TARGET, CONF) + 5
    passed = gate(0.5, 0.5, shadow=_shadow(enough, 0, 40), target_recall=TARGET, confidence=CONF)
    assert passed.passed and passed.checks[0].source == "production"
    failed = gate(0.5, 0.5, shadow=_shadow(enough, 10, 40), target_recall=TARGET, confidence=CONF)
    assert failed.reasons == ["cannot_certify"]
    # Held-out certifies but production, with enough positives, does not: refused.
    both = gate(
        0.5,
        0.5,
        held_out=_held_out(60, 200),
        shadow=_shadow(enough, 10, 40),
        target_recall=TARGET,
        confidence=CONF,
    )
    assert "cannot_certify" in both.reasons
    # Too few production positives to say anything: the held-out certificate decides.
    few = gate(
        0.5,
        0.5,
        held_out=_held_out(60, 200),
        shadow=_shadow(3, 0, 40),
        target_recall=TARGET,
        confidence=CONF,
    )
    assert few.passed, few.messages
