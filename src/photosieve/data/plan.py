"""How many positives a split needs to certify a recall, and split fractions sized by that need.

A recall guarantee comes from held-out positives. If a threshold misses none of n positives, the
one-sided (Clopper-Pearson) bound says: with confidence 1 − δ the true miss rate is below α as
soon as (1 − α)^n ≤ δ. So certifying recall 1 − α at confidence 1 − δ with zero misses needs
n = ⌈ln δ / ln(1 − α)⌉ positives (299 for 99 % at 95 %), and n positives can certify at best
recall δ^(1/n), i.e. a miss rate of 1 − δ^(1/n) (≈ 97.0 % for 100, ≈ 99.7 % for 1,000).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from photosieve.config import CERTIFY
from photosieve.records import Split

# Extra positives planned into calibration beyond the bare minimum: whole duplicate groups make
# split sizes land a little off target, and a few more positives keep a certified threshold from
# hanging on one photo.
DEFAULT_MARGIN = 0.10
# After calibration takes what it needs, the rest of the primary photos is shared in these ratios.
REST_RATIOS: dict[Split, float] = {
    Split.TRAIN: 0.55,
    Split.TRAIN_DEV: 0.07,
    Split.VALIDATION: 0.13,
    Split.TEST: 0.25,
}
# Calibration never takes more than this share, even when the data are too few for the target.
MAX_CALIBRATION = 0.5
# The held-out splits sized by positives needed (calibration certifies, test confirms).
CERTIFYING_SPLITS: tuple[Split, ...] = (Split.CALIBRATION, Split.TEST)


def _check_rates(target_recall: float, confidence: float) -> None:
    if not 0.0 < target_recall < 1.0:
        raise ValueError(f"target recall must be between 0 and 1 (exclusive), got {target_recall}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1 (exclusive), got {confidence}")


def positives_needed(target_recall: float, confidence: float) -> int:
    """Smallest n with (1 − miss_rate)^n ≤ 1 − confidence: positives to certify with 0 misses."""
    _check_rates(target_recall, confidence)
    keep, delta = target_recall, 1.0 - confidence
    n = max(1, math.ceil(math.log(delta) / math.log(keep)))
    # Guard the float rounding of the logarithms at the boundary.
    while n > 1 and keep ** (n - 1) <= delta:
        n -= 1
    while keep**n > delta:
        n += 1
    return n


def certifiable_recall(n_positives: int, confidence: float) -> float:
    """Best recall n positives can certify (all caught): (1 − confidence)^(1/n); 0 for n=0."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1 (exclusive), got {confidence}")
    if n_positives < 0:
        raise ValueError(f"n_positives must be ≥ 0, got {n_positives}")
    if n_positives == 0:
        return 0.0
    return (1.0 - confidence) ** (1.0 / n_positives)


def shortfall(n_positives: int, target_recall: float, confidence: float) -> int:
    """How many positives a split lacks to certify the target (0 when it has enough)."""
    return max(0, positives_needed(target_recall, confidence) - n_positives)


def check_fractions(fractions: Mapping[Split, float]) -> dict[Split, float]:
    """All five splits (missing ones 0), non-negative, summing to 1, with some train."""
    out = {split: float(fractions.get(split, 0.0)) for split in Split}
    negative = [s.value for s, f in out.items() if f < 0 or not math.isfinite(f)]
    if negative:
        raise ValueError(f"split fractions must be ≥ 0; got negative/invalid for {negative}")
    total = sum(out.values())
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"split fractions must sum to 1, they sum to {total:.4f}: {_show(out)}")
    if out[Split.TRAIN] <= 0:
        raise ValueError("the train fraction must be > 0")
    return out


def _show(fractions: Mapping[Split, float]) -> str:
    return ",".join(f"{s.value}={f:g}" for s, f in fractions.items())


def parse_fractions(text: str) -> dict[Split, float]:
    """`train=0.6,train_dev=0.05,validation=0.1,calibration=0.15,test=0.1` → checked fractions."""
    known = {s.value: s for s in Split}
    out: dict[Split, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in known:
            raise ValueError(
                f"bad fraction {part!r}: write name=value with names from {sorted(known)}"
            )
        try:
            out[known[name]] = float(value)
        except ValueError as exc:
            raise ValueError(f"bad fraction {part!r}: {value!r} is not a number") from exc
    return check_fractions(out)


def plan_fractions(
    n_positives: int,
    *,
    target_recall: float = CERTIFY.target_recall,
    confidence: float = CERTIFY.confidence,
    margin: float = DEFAULT_MARGIN,
) -> dict[Split, float]:
    """Fractions for `n_positives` primary positives: calibration first, by positives needed.

    Calibration gets ⌈needed × (1 + margin)⌉ positives (at most `MAX_CALIBRATION` of the data);
    the rest is shared by `REST_RATIOS`. The planner's report then says what each split certifies.
    """
    if n_positives <= 0:
        raise ValueError("no primary positives: nothing can be certified; label some photos")
    need = math.ceil(positives_needed(target_recall, confidence) * (1.0 + margin))
    calibration = min(need / n_positives, MAX_CALIBRATION)
    rest = 1.0 - calibration
    fractions = {split: rest * ratio for split, ratio in REST_RATIOS.items()}
    fractions[Split.CALIBRATION] = calibration
    return check_fractions(fractions)


# --- Calibration size chosen by expected certified workload ------------------------------------
# A certificate with k misses allowed needs n_k positives (99%/95%: 299, 473, 628, 773, …); its
# threshold is the (k+1)-th lowest calibration positive, whose true miss rate q is distributed
# Beta(k+1, n−k): more positives let the threshold sit closer to the target quantile, so fewer
# fine photos are reviewed. Positives put into calibration leave training, which costs ranking
# quality; the learning curve is modelled as a binormal ROC whose separation d' grows by
# `LEARNING_SLOPE` per e-fold of training positives (facts: 150 → 500 training positives moved
# the FPR at 99% recall 4.7% → 3.7%, i.e. Δd' ≈ 0.094 per e-fold).
DEFAULT_PREVALENCE = CERTIFY.prevalence
REFERENCE_FPR = 0.10  # FPR at exactly 99% recall with REFERENCE_TRAIN_POSITIVES training positives
REFERENCE_TRAIN_POSITIVES = 1000
LEARNING_SLOPE = 0.094
MIN_TRAIN_POSITIVES = 250  # calibration never takes positives training needs below this
PLAN_MARGIN = 0.02  # buffer for whole duplicate groups landing a photo or two off target
MAX_MISSES = 30
# Past the point of diminishing returns a few hundredths of a point of workload are not worth
# hundreds of positives taken from training (and the learning-curve model is rough): take the
# smallest calibration whose expected review rate is within this relative tolerance of the best.
WORKLOAD_TOLERANCE = 0.05
_QUANTILES = (np.arange(400) + 0.5) / 400  # midpoints for E[·] over q ~ Beta


def cp_upper_bound(k: int, n: int, confidence: float) -> float:
    """Exact one-sided Clopper–Pearson upper bound on a miss rate with k misses in n."""
    from scipy import stats

    if k >= n:
        return 1.0
    return float(stats.beta.ppf(confidence, k + 1, n - k))


def positives_for_misses(misses: int, target_recall: float, confidence: float) -> int:
    """Fewest calibration positives with which `misses` misses still certify the target."""
    _check_rates(target_recall, confidence)
    alpha = 1.0 - target_recall
    lo = hi = positives_needed(target_recall, confidence)
    while cp_upper_bound(misses, hi, confidence) > alpha:
        lo, hi = hi, hi * 2
    while lo < hi:
        mid = (lo + hi) // 2
        if cp_upper_bound(misses, mid, confidence) <= alpha:
            hi = mid
        else:
            lo = mid + 1
    return hi


@dataclass(frozen=True)
class CalibrationOption:
    """One candidate calibration size and what the workload model expects of it."""

    positives: int  # calibration positives planned (n_k plus the margin)
    misses: int  # misses the certificate may allow (k)
    train_positives: int  # training positives left
    expected_miss_rate: float  # E[q], q ~ Beta(k+1, n−k): true miss rate of the threshold
    expected_fpr: float  # E[share of fine photos reviewed]
    expected_review_rate: float  # at the stated prevalence: π(1 − E[q]) + (1 − π)·E[fpr]
    feasible: bool  # training keeps ≥ MIN_TRAIN_POSITIVES


def _separation(train_positives: float, target_recall: float) -> float:
    """Binormal d' for this many training positives (anchored at REFERENCE_FPR)."""
    from scipy import stats

    d_ref = float(stats.norm.ppf(target_recall) - stats.norm.ppf(REFERENCE_FPR))
    ratio = max(train_positives, 1.0) / REFERENCE_TRAIN_POSITIVES
    return d_ref + LEARNING_SLOPE * math.log(ratio)


def calibration_curve(
    n_positives: int,
    *,
    target_recall: float = CERTIFY.target_recall,
    confidence: float = CERTIFY.confidence,
    prevalence: float = DEFAULT_PREVALENCE,
    margin: float = PLAN_MARGIN,
    min_train_positives: int = MIN_TRAIN_POSITIVES,
) -> list[CalibrationOption]:
    """Expected certified review rate for calibration sizes n_0, n_1, … (k = 0, 1, … misses)."""
    from scipy import stats

    _check_rates(target_recall, confidence)
    train_share = REST_RATIOS[Split.TRAIN]
    out: list[CalibrationOption] = []
    for k in range(MAX_MISSES + 1):
        n = math.ceil(positives_for_misses(k, target_recall, confidence) * (1.0 + margin))
        if n > n_positives * MAX_CALIBRATION and k > 0:
            break
        train = int((n_positives - n) * train_share)
        q = stats.beta.ppf(_QUANTILES, k + 1, n - k)  # (400,) true miss rates
        d = _separation(train, target_recall)
        fpr = stats.norm.cdf(-d - stats.norm.ppf(q))  # binormal: FPR at positive quantile q
        review = prevalence * (1.0 - q) + (1.0 - prevalence) * fpr
        out.append(
            CalibrationOption(
                positives=n,
                misses=k,
                train_positives=train,
                expected_miss_rate=float(q.mean()),
                expected_fpr=float(fpr.mean()),
                expected_review_rate=float(review.mean()),
                feasible=k == 0 or train >= min_train_positives,
            )
        )
    return out


def choose_calibration(
    curve: list[CalibrationOption], *, tolerance: float = WORKLOAD_TOLERANCE
) -> CalibrationOption:
    """The smallest feasible option within `tolerance` (relative) of the lowest expected review
    rate; the zero-miss option when none is feasible."""
    if not curve:
        raise ValueError("empty calibration curve")
    if tolerance < 0:
        raise ValueError(f"tolerance must be ≥ 0, got {tolerance}")
    feasible = [o for o in curve if o.feasible] or curve[:1]
    best = min(o.expected_review_rate for o in feasible)
    good = [o for o in feasible if o.expected_review_rate <= best * (1.0 + tolerance)]
    return min(good, key=lambda o: o.positives)


def plan_by_workload(
    n_positives: int,
    *,
    target_recall: float = CERTIFY.target_recall,
    confidence: float = CERTIFY.confidence,
    prevalence: float = DEFAULT_PREVALENCE,
) -> tuple[dict[Split, float], CalibrationOption, list[CalibrationOption]]:
    """Fractions whose calibration share minimises the expected certified review rate.

    Returns (fractions, chosen option, the whole curve). With too few positives for even the
    zero-miss certificate, calibration takes at most `MAX_CALIBRATION` (as `plan_fractions`).
    """
    if n_positives <= 0:
        raise ValueError("no primary positives: nothing can be certified; label some photos")
    curve = calibration_curve(
        n_positives, target_recall=target_recall, confidence=confidence, prevalence=prevalence
    )
    chosen = choose_calibration(curve)
    calibration = min(chosen.positives / n_positives, MAX_CALIBRATION)
    fractions = {split: (1.0 - calibration) * r for split, r in REST_RATIOS.items()}
    fractions[Split.CALIBRATION] = calibration
    return check_fractions(fractions), chosen, curve
