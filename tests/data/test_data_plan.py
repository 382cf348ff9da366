"""Positives-needed arithmetic and split fractions, against hand-computed values."""

from __future__ import annotations

import math

import pytest

from photosieve.data.plan import (
    MAX_CALIBRATION,
    certifiable_recall,
    parse_fractions,
    plan_fractions,
    positives_needed,
    shortfall,
)
from photosieve.records import Split


def test_positives_needed_hand_computed() -> None:
    # 0.99^298 = 0.0501 > 0.05, 0.99^299 = 0.0496 ≤ 0.05.
    assert 0.99**298 > 0.05 >= 0.99**299
    assert positives_needed(0.99, 0.95) == 299
    assert positives_needed(0.995, 0.95) == 598
    assert positives_needed(0.99, 0.99) == 459
    assert positives_needed(0.95, 0.95) == 59
    assert positives_needed(0.9, 0.9) == 22  # 0.9^21 = 0.109, 0.9^22 = 0.098


@pytest.mark.parametrize("recall", [0.5, 0.8, 0.9, 0.95, 0.97, 0.99, 0.995, 0.999])
@pytest.mark.parametrize("confidence", [0.8, 0.9, 0.95, 0.99])
def test_positives_needed_is_the_smallest_n(recall: float, confidence: float) -> None:
    n = positives_needed(recall, confidence)
    assert recall**n <= 1 - confidence < recall ** (n - 1) or n == 1
    assert certifiable_recall(n, confidence) >= recall - 1e-12
    assert certifiable_recall(n - 1, confidence) < recall


def test_certifiable_recall_hand_computed() -> None:
    assert certifiable_recall(100, 0.95) == pytest.approx(0.9705, abs=1e-4)
    assert certifiable_recall(1000, 0.95) == pytest.approx(0.99701, abs=1e-5)
    assert certifiable_recall(299, 0.95) == pytest.approx(math.exp(math.log(0.05) / 299))
    assert certifiable_recall(0, 0.95) == 0.0


def test_issue_example_one_million_photos() -> None:
    positives = 1_000_000 // 100  # 1 % positive
    assert certifiable_recall(round(positives * 0.01), 0.95) == pytest.approx(0.970, abs=1e-3)
    assert certifiable_recall(round(positives * 0.10), 0.95) == pytest.approx(0.997, abs=1e-3)
    assert shortfall(100, 0.99, 0.95) == 199
    assert shortfall(1000, 0.99, 0.95) == 0


@pytest.mark.parametrize("bad", [(0.0, 0.95), (1.0, 0.95), (0.99, 0.0), (0.99, 1.5)])
def test_rates_are_checked(bad: tuple[float, float]) -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        positives_needed(*bad)


def test_parse_fractions() -> None:
    got = parse_fractions("train=0.6, train-dev=0.05,validation=0.1,calibration=0.15,test=0.1")
    assert got[Split.TRAIN_DEV] == 0.05 and sum(got.values()) == pytest.approx(1)
    assert parse_fractions("train=1")[Split.TEST] == 0.0
    with pytest.raises(ValueError, match="sum to 1"):
        parse_fractions("train=0.5,test=0.1")
    with pytest.raises(ValueError, match="names from"):
        parse_fractions("training=1")
    with pytest.raises(ValueError, match="not a number"):
        parse_fractions("train=lots")
    with pytest.raises(ValueError, match="≥ 0"):
        parse_fractions("train=1.2,test=-0.2")
    with pytest.raises(ValueError, match="train fraction"):
        parse_fractions("test=1")


def test_plan_sizes_calibration_by_positives_needed() -> None:
    plan = plan_fractions(801, target_recall=0.99, confidence=0.95)
    assert sum(plan.values()) == pytest.approx(1)
    assert 801 * plan[Split.CALIBRATION] == pytest.approx(math.ceil(299 * 1.1))
    big = plan_fractions(100_000)
    assert 100_000 * big[Split.CALIBRATION] == pytest.approx(329)
    few = plan_fractions(200)  # not enough data: calibration capped, shortfall reported later
    assert few[Split.CALIBRATION] == MAX_CALIBRATION
    with pytest.raises(ValueError, match="no primary positives"):
        plan_fractions(0)
