"""Evaluation metrics against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from photosieve.evaluate.metrics import band_metrics, cp_interval, evaluate_policy
from photosieve.policy.bands import DecisionPolicy

POLICY = DecisionPolicy(approve_below=0.2, remove_at=0.8)
# 4 offensive: 0.1 (approved = missed), 0.5 (review), 0.9, 0.95 (removed)
# 6 ok: 0.0, 0.1, 0.15 (approved), 0.3, 0.6 (review), 0.85 (removed)
SCORES = np.array([0.1, 0.5, 0.9, 0.95, 0.0, 0.1, 0.15, 0.3, 0.6, 0.85])
LABELS = np.array(["offensive"] * 4 + ["ok"] * 6)


def test_band_counts_and_rates_by_hand() -> None:
    m = band_metrics(SCORES, LABELS, POLICY, prevalence=0.01)
    assert m["counts"] == {
        "offensive/approve": 1, "offensive/review": 1, "offensive/remove": 2,
        "ok/approve": 3, "ok/review": 2, "ok/remove": 1,
    }  # fmt: skip
    assert m["missed_offensive"] == 1 and m["recall"] == pytest.approx(3 / 4)
    assert m["remove_precision"] == pytest.approx(2 / 3)
    assert m["review_rate"] == pytest.approx(3 / 10)
    # π·P(review|offensive) + (1−π)·P(review|ok) = 0.01·1/4 + 0.99·2/6
    assert m["review_rate_at_prevalence"] == pytest.approx(0.01 / 4 + 0.99 * 2 / 6)
    assert m["automatic_share_at_prevalence"] == pytest.approx(1 - (0.01 / 4 + 0.99 * 2 / 6))
    # Precision of the remove band at 1%: 0.01·(2/4) / (0.01·(2/4) + 0.99·(1/6)).
    assert m["remove_precision_at_prevalence"] == pytest.approx(0.005 / (0.005 + 0.165))
    lo, hi = m["recall_ci"]
    assert lo == pytest.approx(stats.beta.ppf(0.025, 3, 2)) and hi == pytest.approx(
        stats.beta.ppf(0.975, 4, 1)
    )
    assert m["wrongly_removed_ok"] == 1


def test_confusion_and_groups() -> None:
    origin = np.array(["a", "b", "a", "a", "b", "b", "a", "a", "b", "b"])
    ev = evaluate_policy(SCORES, LABELS, POLICY, groups={"origin": origin})
    assert ev.confusion.loc["offensive"].tolist() == [1, 1, 2]
    assert ev.confusion.loc["ok"].tolist() == [3, 2, 1]
    table = ev.by_group["origin"]
    assert table.loc["a", "missed_offensive"] == 1 and table.loc["b", "missed_offensive"] == 0
    assert table.loc["b", "n_offensive"] == 1 and table.loc["b", "recall"] == 1.0
    assert ev.to_dict()["by_group"]["origin"][0]["origin"] == "a"


def test_cp_interval_edges_and_validation() -> None:
    lo, hi = cp_interval(10, 10)
    assert hi == 1.0 and lo == pytest.approx(0.025 ** (1 / 10))
    assert np.isnan(cp_interval(0, 0)[0])
    with pytest.raises(ValueError, match="prevalence"):
        band_metrics(SCORES, LABELS, POLICY, prevalence=0.0)
    with pytest.raises(ValueError, match="group column"):
        evaluate_policy(SCORES, LABELS, POLICY, groups={"source": ["x"]})
