"""The recall guarantee, checked by simulation (a small version of bench/guarantee.py)."""

from __future__ import annotations

import numpy as np
from scipy import stats

from photosieve.policy.certify import RecallCertifier

TARGET, CONFIDENCE, TRIALS = 0.99, 0.95, 200


def test_violation_rate_stays_within_delta_on_synthetic_scores() -> None:
    # Positives ~ Beta(6, 1.2), negatives ~ Beta(0.6, 8), 8.5% of 4,000 calibration photos.
    positives = stats.beta(6.0, 1.2)
    rng = np.random.default_rng(20261125)
    violations = 0
    recalls = []
    for _ in range(TRIALS):
        n_pos = rng.binomial(4000, 0.085)
        scores = np.r_[rng.beta(6.0, 1.2, n_pos), rng.beta(0.6, 8.0, 4000 - n_pos)]
        labels = np.r_[np.ones(n_pos, bool), np.zeros(4000 - n_pos, bool)]
        cert = RecallCertifier(TARGET, CONFIDENCE).fit(scores, labels)
        recall = float(positives.sf(cert.threshold_))  # exact recall on fresh production data
        recalls.append(recall)
        violations += recall < TARGET
    # Under the guarantee violations ~ Binomial(200, ≤ 0.05): P(> 19) < 0.2%.
    assert violations <= stats.binom.ppf(0.998, TRIALS, 1 - CONFIDENCE), violations
    # …and it is not vacuous: the threshold is not pushed to 0 (recall ~ 1, review everything).
    assert np.median(recalls) < 0.999
