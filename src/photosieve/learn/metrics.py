"""Ranking metrics the learn stage selects models by: review rate at a target recall and AP.

Pure functions over plain arrays (scores in [0, 1], higher = more likely offensive; labels 0/1).
The product's headline number is the *review rate at 99% recall*: the share of photos a person
must look at when the threshold is set so that 99% of offensive photos reach a person.
"""

from __future__ import annotations

import math

import numpy as np

from photosieve.config import CERTIFY
from photosieve.records import binary_labels


def as_binary_labels(y: object) -> np.ndarray:
    """Labels as a 0/1 int64 array (what the loss and the samplers take); see `binary_labels`."""
    return binary_labels(y).astype(np.int64)


def threshold_at_recall(
    scores: np.ndarray, labels: np.ndarray, *, recall: float = CERTIFY.target_recall
) -> float:
    """The highest threshold t such that scores ≥ t keeps at least `recall` of the positives."""
    if not 0.0 < recall <= 1.0:
        raise ValueError(f"recall must be in (0, 1], got {recall}")
    scores = np.asarray(scores, dtype=np.float64)
    labels = as_binary_labels(labels)
    positives = np.sort(scores[labels == 1])[::-1]  # descending
    if positives.size == 0:
        raise ValueError("need at least one positive (offensive) example to set a threshold")
    k = math.ceil(recall * positives.size - 1e-9)  # positives that must be kept
    return float(positives[max(k, 1) - 1])


def review_rate_at_recall(
    scores: np.ndarray,
    labels: np.ndarray,
    *,
    recall: float = CERTIFY.target_recall,
    prevalence: float | None = None,
) -> float:
    """Share of photos scored at or above the threshold reaching `recall` (lower is better).

    With `prevalence`, the rate re-weighted to that share of offensive photos:
    ``prevalence · P(review | offensive) + (1 − prevalence) · P(review | ok)``.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = as_binary_labels(labels)
    t = threshold_at_recall(scores, labels, recall=recall)
    reviewed = scores >= t
    if prevalence is None:
        return float(reviewed.mean())
    if not 0.0 <= prevalence <= 1.0:
        raise ValueError(f"prevalence must be in [0, 1], got {prevalence}")
    negatives = labels == 0
    p_neg = float(reviewed[negatives].mean()) if negatives.any() else 0.0
    p_pos = float(reviewed[labels == 1].mean())
    return prevalence * p_pos + (1.0 - prevalence) * p_neg


def high_recall_review_rate(
    scores: np.ndarray, labels: np.ndarray, *, recall_from: float = 0.9
) -> float:
    """Mean review rate over the recall targets from `recall_from` to 100% (lower is better).

    For each of the lowest-scored positives that a recall ≥ `recall_from` must still catch, the
    share of photos scored at or above it; averaged. It is the normalised area under the ROC
    curve's high-recall end (a partial AUC), and moves smoothly where the single point at 99%
    recall jumps with one hard positive: a steadier signal for early stopping.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = as_binary_labels(labels)
    positives = np.sort(scores[labels == 1])
    if positives.size == 0:
        raise ValueError("need at least one positive (offensive) example")
    n_tail = max(1, math.ceil((1.0 - recall_from) * positives.size))
    ordered = np.sort(scores)
    # share of photos with score ≥ each tail positive's score
    at_or_above = 1.0 - np.searchsorted(ordered, positives[:n_tail], side="left") / scores.size
    return float(at_or_above.mean())


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Average precision of the ranking (higher is better); NaN without positives."""
    labels = as_binary_labels(labels)
    if labels.sum() == 0:
        return float("nan")
    from sklearn.metrics import average_precision_score  # scikit-learn loads only to measure

    return float(average_precision_score(labels, np.asarray(scores, dtype=np.float64)))


def error_rate(scores: np.ndarray, labels: np.ndarray, *, threshold: float) -> float:
    """Share of photos misclassified when scores ≥ threshold are called offensive."""
    labels = as_binary_labels(labels)
    if labels.size == 0:
        return float("nan")
    predicted = (np.asarray(scores, dtype=np.float64) >= threshold).astype(np.int64)
    return float((predicted != labels).mean())


def ranking_summary(
    scores: np.ndarray, labels: np.ndarray, *, recall: float = CERTIFY.target_recall
) -> dict[str, float]:
    """AP and review rates (raw and at 1% prevalence) for one split, as plain floats."""
    labels = as_binary_labels(labels)
    out: dict[str, float] = {
        "n": float(labels.size),
        "positives": float(labels.sum()),
        "average_precision": average_precision(scores, labels),
    }
    if labels.sum() > 0:
        out["review_rate_at_recall"] = review_rate_at_recall(scores, labels, recall=recall)
        out["review_rate_at_recall_prev1pct"] = review_rate_at_recall(
            scores, labels, recall=recall, prevalence=CERTIFY.prevalence
        )
    return out
