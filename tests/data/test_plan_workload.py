"""The workload planner: calibration sized by the expected certified review rate."""

from __future__ import annotations

import pytest

from photosieve.data.plan import (
    MIN_TRAIN_POSITIVES,
    REST_RATIOS,
    CalibrationOption,
    calibration_curve,
    choose_calibration,
    plan_by_workload,
    positives_for_misses,
)
from photosieve.policy.certify import positives_for_misses as certify_positives_for_misses
from photosieve.records import Split


@pytest.mark.parametrize(
    ("target", "counts"),
    [
        (0.99, [299, 473, 628, 773, 913, 1049]),
        (0.98, [149, 236, 313, 386, 456, 523]),
        (0.95, [59, 93, 124, 153, 181, 208]),
    ],
)
def test_positives_for_misses_matches_the_exact_table(target: float, counts: list[int]) -> None:
    got = [positives_for_misses(k, target, 0.95) for k in range(6)]
    assert got == counts
    assert got == [certify_positives_for_misses(k, target, 0.95) for k in range(6)]


def test_curve_steps_through_the_miss_counts_and_workload_falls() -> None:
    curve = calibration_curve(3450)
    assert [o.misses for o in curve[:6]] == [0, 1, 2, 3, 4, 5]
    assert curve[0].positives >= 299
    reviews = [o.expected_review_rate for o in curve]
    assert reviews[1] < reviews[0]  # one allowed miss is worth its 174 positives here
    # E[q] of the (k+1)-th lowest of n: (k+1)/(n+1)
    assert curve[5].expected_miss_rate == pytest.approx(6 / (curve[5].positives + 1), rel=0.02)


def test_sensible_sizes_for_small_and_large_data() -> None:
    _, small, _ = plan_by_workload(800)
    _, large, _ = plan_by_workload(3450)
    assert small.misses == 0 and 299 <= small.positives < 330  # training could not spare more
    assert 3 <= large.misses <= 8  # a few misses allowed: 789–1,470 positives
    assert large.train_positives >= 1000


@pytest.mark.parametrize("n", [300, 500, 800, 1000, 2000, 3450, 10_000])
def test_never_below_the_zero_miss_minimum_and_fractions_sum_to_one(n: int) -> None:
    fractions, choice, _ = plan_by_workload(n)
    assert choice.positives >= 299
    assert sum(fractions.values()) == pytest.approx(1.0)
    assert fractions[Split.CALIBRATION] * n >= min(299, n * 0.5) - 1e-9
    assert all(fractions[s] > 0 for s in REST_RATIOS)  # validation and test keep positives


def test_calibration_grows_monotonically_with_the_positives() -> None:
    sizes = [plan_by_workload(n)[1].positives for n in range(300, 12_001, 300)]
    assert sizes == sorted(sizes)
    assert sizes[-1] > sizes[0]


def test_training_keeps_its_minimum() -> None:
    for n in (900, 1200, 1600, 2500):
        _, choice, _ = plan_by_workload(n)
        assert choice.misses == 0 or choice.train_positives >= MIN_TRAIN_POSITIVES


def test_choose_prefers_the_smaller_size_within_tolerance() -> None:
    def option(n: int, review: float, feasible: bool = True) -> CalibrationOption:
        return CalibrationOption(n, 0, 1000, 0.005, review, review, feasible)

    curve = [option(300, 0.30), option(500, 0.20), option(700, 0.195), option(900, 0.10, False)]
    assert choose_calibration(curve, tolerance=0.05).positives == 500
    assert choose_calibration(curve, tolerance=0.0).positives == 700
    with pytest.raises(ValueError, match="tolerance"):
        choose_calibration(curve, tolerance=-1)
    with pytest.raises(ValueError, match="empty"):
        choose_calibration([])
    with pytest.raises(ValueError, match="no primary positives"):
        plan_by_workload(0)
