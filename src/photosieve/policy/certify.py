"""Certified operating thresholds: an auto-approve threshold with a recall guarantee and an
auto-remove threshold with a precision guarantee, both from a held-out calibration split.

Recall (auto-approve, `RecallCertifier`). A photo is approved iff ``score < t``, so the miss
count at ``t`` is the number of calibration positives scoring below ``t``. For each candidate
``t`` from the safe end (lowest) upward we test "the miss rate at t exceeds α" with the exact
one-sided Clopper–Pearson upper bound and stop at the first threshold that fails (fixed-sequence
testing: valid without a multiplicity correction because misses only grow with ``t``). The bound
only changes when ``t`` passes a positive's score, so the winner is the ``(m*+1)``-th lowest
positive score, where ``m*`` is the largest miss count whose bound is still ≤ α: every negative
below it is approved, that positive and everything above it are not. Equivalently, the chosen
threshold exceeds the true α-quantile of positive scores with probability
``P(Binomial(n, α) ≤ m*) ≤ δ``: the guarantee holds for any score distribution, ties included,
provided the calibration positives are a uniform random sample of production positives.

Precision (auto-remove, `PrecisionCertifier`). Precision depends on prevalence, and labelled
sets over-represent offensive photos (the benchmark: 8.5% vs ≈1% in production). Certifying
precision on the calibration mix would overstate it in production, so by default we certify the
precision *at a stated production prevalence π*: ``π·TPR / (π·TPR + (1−π)·FPR)`` with a
Clopper–Pearson lower bound on TPR (positives) and upper bound on FPR (negatives). That
quantity is not monotone in the threshold and a top-down fixed sequence would stop at once
(the first thresholds have almost no data), so the thresholds are a fixed, data-independent
grid tested with a Bonferroni correction (each bound at level δ / (2·K)); the lowest passing
threshold at or above the approve threshold is chosen. The two guarantees hold jointly with
confidence ≥ 1 − 2δ.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from photosieve.config import CERTIFY
from photosieve.policy.bands import DecisionPolicy
from photosieve.policy.drift import reference_distribution
from photosieve.records import binary_labels

# Remove-band candidates: fixed before seeing data (0.5 … 0.9999, denser towards 1).
DEFAULT_REMOVE_GRID: tuple[float, ...] = tuple(
    float(x) for x in np.round(1.0 - np.geomspace(0.5, 1e-4, 40), 6)
)


class InsufficientPositivesError(ValueError):
    """Too few calibration positives to certify the target even with zero misses."""

    def __init__(self, n_positives: int, n_required: int, target_recall: float, confidence: float):
        self.n_positives = n_positives
        self.n_required = n_required
        self.n_missing = n_required - n_positives
        super().__init__(
            f"cannot certify recall ≥ {target_recall:g} with {confidence:.0%} confidence: the "
            f"calibration split has {n_positives} offensive photos but even with zero misses "
            f"it needs {n_required}; add {self.n_missing} more offensive photos drawn uniformly "
            "from production (not external data, not actively selected), or lower the target"
        )


def _check_scores(scores: Sequence[float] | np.ndarray, labels: np.ndarray) -> np.ndarray:
    arr = np.asarray(scores, dtype=np.float64).ravel()
    if arr.shape != labels.shape:
        raise ValueError(f"{arr.size} scores but {labels.size} labels")
    if not np.all(np.isfinite(arr)) or arr.min(initial=0.0) < 0 or arr.max(initial=0.0) > 1:
        raise ValueError("scores must be finite and within [0, 1]")
    return arr


def _check_level(name: str, value: float) -> None:
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be strictly between 0 and 1, got {value}")


def cp_upper(k: np.ndarray | int, n: np.ndarray | int, delta: float) -> np.ndarray:
    """Exact one-sided (1−δ) Clopper–Pearson upper bound on a rate with `k` events in `n`."""
    from scipy import stats  # loaded on first use: every CLI command imports this module

    k_arr, n_arr = np.broadcast_arrays(np.asarray(k, dtype=float), np.asarray(n, dtype=float))
    with np.errstate(invalid="ignore", divide="ignore"):
        bound = stats.beta.ppf(1.0 - delta, k_arr + 1.0, n_arr - k_arr)
    return np.where(k_arr >= n_arr, 1.0, bound)


def cp_lower(k: np.ndarray | int, n: np.ndarray | int, delta: float) -> np.ndarray:
    """Exact one-sided (1−δ) Clopper–Pearson lower bound on a rate with `k` events in `n`."""
    from scipy import stats

    k_arr, n_arr = np.broadcast_arrays(np.asarray(k, dtype=float), np.asarray(n, dtype=float))
    with np.errstate(invalid="ignore", divide="ignore"):
        bound = stats.beta.ppf(delta, k_arr, n_arr - k_arr + 1.0)
    return np.where(k_arr <= 0, 0.0, bound)


def cp_interval(k: int, n: int, confidence: float = CERTIFY.confidence) -> tuple[float, float]:
    """Two-sided exact Clopper–Pearson interval for `k` events in `n` (NaNs when n = 0)."""
    if n == 0:
        return float("nan"), float("nan")
    half = (1.0 - confidence) / 2.0
    return float(cp_lower(k, n, half)), float(cp_upper(k, n, half))


def min_positives(target_recall: float, confidence: float) -> int:
    """Fewest positives that certify `target_recall` at `confidence` with zero misses."""
    alpha, delta = 1.0 - target_recall, 1.0 - confidence
    n = max(1, math.ceil(math.log(delta) / math.log(1.0 - alpha)) - 1)
    while float(cp_upper(0, n, delta)) > alpha:  # exact check guards the float edge cases
        n += 1
    return n


def positives_for_misses(misses: int, target_recall: float, confidence: float) -> int:
    """Fewest calibration positives with which `misses` misses still certify the target."""
    alpha, delta = 1.0 - target_recall, 1.0 - confidence
    lo, hi = min_positives(target_recall, confidence), min_positives(target_recall, confidence)
    while float(cp_upper(misses, hi, delta)) > alpha:  # bound shrinks with n: bracket, bisect
        lo, hi = hi, hi * 2
    while lo < hi:
        mid = (lo + hi) // 2
        if float(cp_upper(misses, mid, delta)) <= alpha:
            hi = mid
        else:
            lo = mid + 1
    return hi


class RecallCertifier:
    """The highest auto-approve threshold whose recall is certified ≥ `target_recall`."""

    def __init__(
        self,
        target_recall: float = CERTIFY.target_recall,
        confidence: float = CERTIFY.confidence,
    ) -> None:
        self.target_recall = target_recall
        self.confidence = confidence

    def fit(
        self, scores: Sequence[float] | np.ndarray, labels: Sequence[Any] | np.ndarray
    ) -> RecallCertifier:
        """Certify on calibration scores/labels; raises `InsufficientPositivesError`."""
        _check_level("target_recall", self.target_recall)
        _check_level("confidence", self.confidence)
        y = binary_labels(labels)
        s = _check_scores(scores, y)
        alpha, delta = 1.0 - self.target_recall, 1.0 - self.confidence
        positives = np.sort(s[y])  # (n,) ascending: the safe end first
        n = positives.size
        self.n_required_ = min_positives(self.target_recall, self.confidence)
        if n < self.n_required_:
            raise InsufficientPositivesError(
                n, self.n_required_, self.target_recall, self.confidence
            )
        # Fixed sequence over miss counts m = 0, 1, …: the bound grows with m, stop at first fail.
        bounds = cp_upper(np.arange(n), n, delta)  # (n,) bound when t misses m positives
        failing = np.flatnonzero(bounds > alpha)
        max_misses = int(failing[0]) - 1 if failing.size else n - 1
        self.threshold_ = float(positives[max_misses])
        misses = int(np.count_nonzero(positives < self.threshold_))  # < max_misses with ties
        self.n_positives_ = n
        self.n_misses_ = misses
        self.max_misses_ = max_misses
        self.observed_recall_ = 1.0 - misses / n
        self.recall_lower_bound_ = 1.0 - float(cp_upper(misses, n, delta))
        negatives = s[~y]
        self.n_negatives_ = int(negatives.size)
        self.approved_negative_rate_ = (
            float(np.mean(negatives < self.threshold_)) if negatives.size else float("nan")
        )
        return self

    def evidence(self) -> dict[str, Any]:
        """The numbers that certify `threshold_` (for the bundle and the report)."""
        _require_fitted(self, "threshold_")
        return {
            "method": "Clopper-Pearson upper bound on the miss rate, fixed-sequence testing",
            "threshold": self.threshold_,
            "n_positives": self.n_positives_,
            "n_negatives": self.n_negatives_,
            "n_misses": self.n_misses_,
            "max_misses_allowed": self.max_misses_,
            "n_positives_required": self.n_required_,
            "observed_recall": self.observed_recall_,
            "recall_lower_bound": self.recall_lower_bound_,
            "approved_negative_rate": self.approved_negative_rate_,
        }


class PrecisionCertifier:
    """The lowest auto-remove threshold whose precision is certified ≥ `target_precision`.

    With `prevalence` set (a float in (0, 1)), precision is certified at that production
    prevalence; with `prevalence=None`, at the calibration set's own class mix (only honest when
    the calibration set was sampled at production prevalence). `threshold_` is None when no
    candidate passes; `reason_` then says why.
    """

    def __init__(
        self,
        target_precision: float = CERTIFY.target_precision,
        confidence: float = CERTIFY.confidence,
        *,
        prevalence: float | None = CERTIFY.prevalence,
        candidates: Sequence[float] | None = None,
        min_threshold: float = 0.0,
    ) -> None:
        self.target_precision = target_precision
        self.confidence = confidence
        self.prevalence = prevalence
        self.candidates = candidates
        self.min_threshold = min_threshold

    def fit(
        self, scores: Sequence[float] | np.ndarray, labels: Sequence[Any] | np.ndarray
    ) -> PrecisionCertifier:
        """Test every candidate (Bonferroni) and keep the lowest certified one."""
        _check_level("target_precision", self.target_precision)
        _check_level("confidence", self.confidence)
        if self.prevalence is not None:
            _check_level("prevalence", self.prevalence)
        y = binary_labels(labels)
        s = _check_scores(scores, y)
        raw = DEFAULT_REMOVE_GRID if self.candidates is None else self.candidates
        grid = np.asarray(raw, dtype=np.float64)  # (K,)
        delta_each = (1.0 - self.confidence) / grid.size
        n_pos, n_neg = int(y.sum()), int((~y).sum())
        tp = (s[y][None, :] >= grid[:, None]).sum(axis=1)  # (K,) positives removed
        fp = (s[~y][None, :] >= grid[:, None]).sum(axis=1)  # (K,) negatives removed
        if self.prevalence is None:
            lower = cp_lower(tp, tp + fp, delta_each)
            observed = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), np.nan)
        else:
            pi = self.prevalence
            tpr_lo = cp_lower(tp, n_pos, delta_each / 2) if n_pos else np.zeros(grid.size)
            fpr_hi = cp_upper(fp, n_neg, delta_each / 2) if n_neg else np.ones(grid.size)
            lower = _ppv(pi, tpr_lo, fpr_hi)
            observed = _ppv(pi, tp / max(n_pos, 1), fp / max(n_neg, 1))
        passing = np.flatnonzero((lower >= self.target_precision) & (grid >= self.min_threshold))
        self.candidates_ = grid
        self.precision_lower_bounds_ = lower
        self.n_positives_, self.n_negatives_ = n_pos, n_neg
        best = int(passing[np.argmin(grid[passing])]) if passing.size else int(np.argmax(lower))
        self.threshold_ = float(grid[best]) if passing.size else None
        self.precision_lower_bound_ = float(lower[best])
        self.observed_precision_ = float(observed[best])
        self.n_removed_positives_, self.n_removed_negatives_ = int(tp[best]), int(fp[best])
        self.reason_ = (
            ""
            if passing.size
            else (
                f"no candidate reaches precision ≥ {self.target_precision:g} with "
                f"{self.confidence:.0%} confidence"
                + (f" at prevalence {self.prevalence:g}" if self.prevalence else "")
                + f" (best lower bound {self.precision_lower_bound_:.4f} at "
                f"{grid[best]:g}; {n_neg} calibration negatives bound the false-positive "
                "rate too loosely — more calibration data would help)"
            )
        )
        return self

    def evidence(self) -> dict[str, Any]:
        """The numbers behind `threshold_` (or behind the refusal)."""
        _require_fitted(self, "candidates_")
        return {
            "method": "Clopper-Pearson bounds on TPR and FPR at the stated prevalence, "
            "Bonferroni over a fixed grid"
            if self.prevalence is not None
            else "Clopper-Pearson lower bound on precision, Bonferroni over a fixed grid",
            "threshold": self.threshold_,
            "prevalence": self.prevalence,
            "n_candidates": int(self.candidates_.size),
            "n_removed_positives": self.n_removed_positives_,
            "n_removed_negatives": self.n_removed_negatives_,
            "observed_precision": self.observed_precision_,
            "precision_lower_bound": self.precision_lower_bound_,
            "reason_not_certified": self.reason_,
        }


def _ppv(pi: float, tpr: np.ndarray | float, fpr: np.ndarray | float) -> np.ndarray:
    tpr_a, fpr_a = np.asarray(tpr, dtype=float), np.asarray(fpr, dtype=float)
    num = pi * tpr_a
    den = num + (1.0 - pi) * fpr_a
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)


def _require_fitted(obj: object, attribute: str) -> None:
    if not hasattr(obj, attribute):
        from sklearn.exceptions import NotFittedError

        raise NotFittedError(f"{type(obj).__name__} is not fitted yet; call fit(scores, labels)")


def certify_policy(
    scores: Sequence[float] | np.ndarray,
    labels: Sequence[Any] | np.ndarray,
    *,
    target_recall: float = CERTIFY.target_recall,
    confidence: float = CERTIFY.confidence,
    target_precision: float | None = CERTIFY.target_precision,
    prevalence: float | None = CERTIFY.prevalence,
    source: str = "",
) -> DecisionPolicy:
    """A `DecisionPolicy` with a certified approve threshold and, when certifiable, a remove band.

    `target_precision=None` disables the remove band. `source` describes where the calibration
    photos came from; it is stored in the evidence, with the calibration scores' reference
    distribution for the drift alarm (`policy.drift`). Raises `InsufficientPositivesError`.
    """
    recall = RecallCertifier(target_recall, confidence).fit(scores, labels)
    evidence: dict[str, Any] = {"calibration_source": source, "recall": recall.evidence()}
    remove_at: float | None = None
    if target_precision is not None:
        precision = PrecisionCertifier(
            target_precision, confidence, prevalence=prevalence, min_threshold=recall.threshold_
        ).fit(scores, labels)
        remove_at = precision.threshold_
        evidence["precision"] = precision.evidence()
        evidence["joint_confidence"] = 1.0 - 2.0 * (1.0 - confidence)
    pi = CERTIFY.prevalence if prevalence is None else prevalence
    y = binary_labels(labels)
    if y.any() and not y.all():  # the drift alarm's reference (`policy.drift`)
        evidence["reference"] = reference_distribution(
            scores, y, prevalence=pi, approve_below=recall.threshold_, remove_at=remove_at
        )
    return DecisionPolicy(
        approve_below=recall.threshold_,
        remove_at=remove_at,
        target_recall=target_recall,
        target_precision=target_precision,
        confidence=confidence,
        prevalence=pi,
        evidence=evidence,
    )
