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
