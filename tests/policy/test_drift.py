"""The drift statistics: reference distribution, PSI, band test, audit-based recall bound."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from photosieve.policy import drift
from photosieve.policy.bands import DecisionPolicy
from photosieve.policy.certify import certify_policy


def _calibration(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    scores = np.r_[rng.beta(6, 2, 400), rng.beta(1, 9, 3000)]
    return scores, np.r_[np.ones(400), np.zeros(3000)]


def _assess(reference: dict[str, object], scores: np.ndarray) -> drift.DriftReport:
    return drift.assess(reference, scores, recall_upper=None, target_recall=0.99,
                        min_uploads=100, psi_limit=0.25, band_p_value=1e-3)  # fmt: skip


def test_certified_policy_carries_the_reference_and_it_survives_json() -> None:
    scores, labels = _calibration()
    policy = certify_policy(scores, labels)
    reference = policy.evidence["reference"]
    assert sum(reference["expected"]) == pytest.approx(1.0)
    assert reference["bands"]["approve"] + reference["bands"]["review"] + reference["bands"][
        "remove"
    ] == pytest.approx(1.0)
    assert reference["min_positive_score"] == pytest.approx(scores[:400].min())
    assert reference["approve_below"] == policy.approve_below
    again = DecisionPolicy.from_dict(policy.to_dict())
    assert again.evidence["reference"] == reference
    old = DecisionPolicy.from_dict({"approve_below": 0.2})  # a bundle from before: no reference
    assert not drift.assess(old.evidence.get("reference"), scores, recall_upper=None,
                            target_recall=0.99, min_uploads=1, psi_limit=0.25,
                            band_p_value=1e-3).available  # fmt: skip


def test_same_population_passes_and_a_shift_raises() -> None:
    scores, labels = _calibration()
    reference = certify_policy(scores, labels).evidence["reference"]
    rng = np.random.default_rng(1)
    same = np.r_[rng.beta(6, 2, 20), rng.beta(1, 9, 1980)]  # 1% prevalence, as certified
    calm = _assess(reference, same)
    assert calm.available and not calm.raised and calm.psi is not None and calm.psi < 0.1
    shifted = rng.beta(2, 4, 2000)  # the camera, the crowd or the model changed
    alarm = _assess(reference, shifted)
    assert alarm.raised and alarm.psi is not None and alarm.psi > 0.25
    assert any("PSI" in r for r in alarm.reasons) and any("band" in r for r in alarm.reasons)
    few = _assess(reference, shifted[:50])
    assert not few.raised and "needs 100" in few.note


def test_psi_is_zero_for_equal_shares_and_grows_with_the_shift() -> None:
    e = np.full(10, 0.1)
    assert drift.psi(e, e) == 0.0
    small, big = np.r_[0.12, np.full(9, 0.88 / 9)], np.r_[0.5, np.full(9, 0.5 / 9)]
    assert 0 < drift.psi(e, small) < drift.psi(e, big)


@pytest.mark.parametrize(("k", "p"), [(1, 0.5), (3, 0.01), (7, 0.2), (0, 0.1)])
def test_binomial_count_lower_is_the_smallest_plausible_count(k: int, p: float) -> None:
    m = drift.binomial_count_lower(k, p, 0.05)
    assert m >= k
    if k:
        assert stats.binom.sf(k - 1, m, p) > 0.05
        assert m == k or stats.binom.sf(k - 1, m - 1, p) <= 0.05


def test_recall_upper_bound_flags_a_broken_promise() -> None:
    # 1,000 caught; audits at 1% found 3 misses: at least ~83 misses → recall ≤ ~0.92 < 0.99
    upper = drift.recall_upper_bound(1000, 0, {0.01: (3, 50_000)}, 0.95)
    assert upper is not None and upper < 0.99
    fine = drift.recall_upper_bound(1000, 0, {0.01: (0, 50_000)}, 0.95)
    assert fine == 1.0
    assert drift.recall_upper_bound(0, 0, {}, 0.95) is None


def test_the_band_test_counts_the_references_own_sampling_error() -> None:
    # Each trial: a fresh calibration sample (400 offensive, 1,000 ok) gives the reference, and a
    # window of 2,000 uploads from the *same* population at 1% is tested against it. A test that
    # takes the reference's shares as exact raises the alarm in ~5% of such windows (p < 0.001
    # promised 0.1%); counting the reference's error keeps it near the promise, and a real shift
    # of the fine photos' scores is still caught.
    rng = np.random.default_rng(3)
    threshold, trials = 0.3, 300
    false_alarms = {"both errors": 0, "reference as exact": 0}
    caught = 0
    for _ in range(trials):
        scores = np.r_[rng.beta(6, 2, 400), rng.beta(1, 9, 1000)]
        labels = np.r_[np.ones(400), np.zeros(1000)]
        reference = drift.reference_distribution(
            scores, labels, prevalence=0.01, approve_below=threshold, remove_at=0.9
        )
        exact = {k: v for k, v in reference.items() if k != "class_bands"}

        def counts(window: np.ndarray) -> np.ndarray:
            approved, removed = int((window < threshold).sum()), int((window >= 0.9).sum())
            return np.array([approved, window.size - approved - removed, removed], float)

        same = counts(np.r_[rng.beta(6, 2, 20), rng.beta(1, 9, 1980)])
        false_alarms["both errors"] += drift.band_test_p_value(reference, same) < 1e-3
        false_alarms["reference as exact"] += drift.band_test_p_value(exact, same) < 1e-3
        shifted = counts(np.r_[rng.beta(6, 2, 20), rng.beta(1, 6, 1980)])  # 8 points fewer approved
        caught += drift.band_test_p_value(reference, shifted) < 1e-3
    assert false_alarms["reference as exact"] >= 0.02 * trials  # the old test's flaw, measured
    assert false_alarms["both errors"] <= 0.01 * trials
    assert caught >= 0.9 * trials
