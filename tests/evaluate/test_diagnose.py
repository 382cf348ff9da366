"""Diagnosis arithmetic: hand-made error rates name the right gap; scores → errors per split."""

from __future__ import annotations

import math

import numpy as np
import pytest
from rich.console import Console

from photosieve.cli.diagnosis_view import print_diagnosis
from photosieve.evaluate.diagnose import (
    REMEDIES,
    analyse_gaps,
    diagnose_arrays,
    own_recall_errors,
    split_errors,
)


@pytest.mark.parametrize(
    ("errors", "largest"),
    [
        ({"train": 0.10, "train_dev": 0.11, "validation": 0.12, "test": 0.12}, "avoidable_bias"),
        ({"train": 0.01, "train_dev": 0.09, "validation": 0.10, "test": 0.10}, "variance"),
        ({"train": 0.01, "train_dev": 0.015, "validation": 0.08, "test": 0.09}, "data_mismatch"),
        (
            {"train": 0.01, "train_dev": 0.01, "validation": 0.02, "test": 0.07},
            "validation_overfit",
        ),
    ],
)
def test_largest_gap_is_named(errors: dict[str, float], largest: str) -> None:
    result = analyse_gaps(**errors)
    assert result.largest == largest
    assert result.remedies == REMEDIES[largest]


def test_gap_arithmetic() -> None:
    result = analyse_gaps(train=0.05, train_dev=0.07, validation=0.10, test=0.09, human=0.01)
    assert result.gaps["avoidable_bias"] == pytest.approx(0.04)
    assert result.gaps["variance"] == pytest.approx(0.02)
    assert result.gaps["data_mismatch"] == pytest.approx(0.03)
    assert result.gaps["validation_overfit"] == pytest.approx(-0.01)
    assert result.largest == "avoidable_bias"


def test_missing_split_gives_nan_gaps_that_are_skipped() -> None:
    result = analyse_gaps(train=0.01, train_dev=math.nan, validation=0.05, test=0.08)
    assert math.isnan(result.gaps["variance"]) and math.isnan(result.gaps["data_mismatch"])
    assert result.largest == "validation_overfit"


def test_no_positive_gap_names_nothing() -> None:
    result = analyse_gaps(train=0.0, train_dev=0.0, validation=0.0, test=0.0)
    assert result.largest is None
    assert "nothing to fix" in result.remedies


def test_error_rates_must_be_rates() -> None:
    with pytest.raises(ValueError, match="train error must be a rate"):
        analyse_gaps(train=1.5, train_dev=0.0, validation=0.0, test=0.0)


def test_errors_per_split_from_scores() -> None:
    scores = np.array([0.9, 0.2, 0.6, 0.4, 0.7, 0.1])
    labels = np.array([1, 0, 0, 1, 1, 0])
    splits = np.array(["train", "train", "validation", "validation", "test", "test"])
    errs = split_errors(scores, labels, splits, threshold=0.5)
    assert errs["train"] == 0.0
    assert errs["validation"] == 1.0  # 0.6 is a false alarm, 0.4 a miss
    assert errs["test"] == 0.0
    assert math.isnan(errs["train_dev"])


def test_diagnosis_uses_the_validation_recall_threshold_and_prints() -> None:
    rng = np.random.default_rng(0)
    labels = (rng.random(400) < 0.2).astype(int)
    scores = np.clip(0.3 * labels + rng.normal(0.4, 0.15, 400), 0, 1)
    splits = np.array(["train", "train_dev", "validation", "test"] * 100)
    scores[splits == "train"] = labels[splits == "train"] * 0.9 + 0.05  # train is memorised
    diagnosis = diagnose_arrays(scores, labels, splits, target_recall=0.99)
    val = splits == "validation"
    assert (scores[val & (labels == 1)] >= diagnosis.operating.threshold).mean() >= 0.99
    assert diagnosis.operating.errors["train"] == 0.0
    assert diagnosis.largest == "variance"
    names = [row["name"] for row in diagnosis.rows()]
    assert names[:5] == ["human", "train", "train_dev", "validation", "test"]
    assert sum(row["largest"] for row in diagnosis.rows()) == 1
    console = Console(record=True, width=120)
    print_diagnosis(diagnosis, console)
    text = console.export_text()
    assert "variance (train-dev − train)" in text and "largest gap" in text


def test_own_recall_errors_use_each_splits_threshold() -> None:
    scores = np.array([0.5, 0.8, 0.1, 0.3, 0.2, 0.25])
    labels = np.array([1, 0, 0, 1, 0, 0])
    splits = np.array(["train", "train", "train", "test", "test", "test"])
    errs = own_recall_errors(scores, labels, splits, recall=1.0)
    assert errs["train"] == pytest.approx(1 / 3)  # threshold 0.5: 0.8 is a false alarm
    assert errs["test"] == 0.0  # threshold 0.3: nothing else above it
    assert math.isnan(errs["validation"])
