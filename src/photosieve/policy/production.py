"""Recall certified on production itself: census of the review band + known-probability audits.

Every photo the live model sends to a person is labelled (a census, inclusion probability 1); a
random audit labels each auto-approved photo with a known probability ``p_i`` (it may depend on
the score, e.g. more audits near the threshold, as long as it is fixed before the label is seen).
Appeals and user reports are *not* random samples and never count as evidence here.

For a scoring function ``f`` (the live model, or a candidate re-scored on the same photos) and a
threshold ``t`` (approve iff ``f < t``):

- ``caught``: labelled offensive photos with ``f ≥ t`` — known exactly (a lower bound on the
  true count, which is all recall needs);
- ``census misses``: offensive census photos with ``f < t`` — known exactly;
- ``audited misses``: among photos audited with probability ``p_h`` (one stratum per distinct
  probability), ``k_h`` offensive ones with ``f < t`` were found. Audits are independent
  Bernoulli(``p_h``) draws, so ``k_h ~ Binomial(M_h, p_h)`` for the unknown count ``M_h`` of
  offensive photos below ``t`` in that stratum; the exact upper bound is the largest ``M_h`` (at
  most the ``N_h`` photos there) with ``P(Binomial(M_h, p_h) ≤ k_h) > δ_h`` (Bonferroni over
  strata: ``δ_h = δ / H``).

recall ≥ caught / (caught + census misses + Σ_h upper(M_h)) with confidence ≥ 1 − δ. A
candidate's threshold comes from a fixed-sequence scan from the safe (low) end over the labelled
positives' scores, stopping at the first threshold that fails — valid without a multiplicity
correction because misses only grow with ``t``.

`anytime_recall_bound` is the confidence-sequence version for the admin page: valid at every
look simultaneously (no multiple-looks penalty), from Ville's inequality on the nonnegative
martingale ``Π exp(−λ Z_i / p_i) / ((1 − p_i) + p_i e^{−λ/p_i})`` over the approved offensive
photos (Z_i: audited), mixed over a fixed grid of λ. It is looser than the fixed-time bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from photosieve.config import CERTIFY

# λ grid of the confidence sequence's mixture (fixed before any data; equal weights).
LAMBDAS: tuple[float, ...] = tuple(float(x) for x in np.geomspace(1e-3, 2.0, 24))
CENSUS = 1.0


@dataclass(frozen=True)
class ProductionEvidence:
    """Decided uploads of one period, row-aligned arrays.

    `inclusion[i]` is the probability that photo i would be labelled as evidence (1 for the
    census of the review band, the audit probability for an auto-approved photo); `labelled[i]`
    says whether it was (census always; audits by chance); `offensive[i]` is the person's label
    (ignored where not labelled). Photos labelled only through an appeal or a report must be
    given as *not* labelled.
    """

    scores: np.ndarray  # (n,) the certified model's score, higher = more likely offensive
    inclusion: np.ndarray  # (n,) in (0, 1]
    labelled: np.ndarray  # (n,) bool
    offensive: np.ndarray  # (n,) bool

    def __post_init__(self) -> None:
        n = np.asarray(self.scores).shape
        for name in ("inclusion", "labelled", "offensive"):
            if np.asarray(getattr(self, name)).shape != n:
                raise ValueError(f"{name} has shape {np.asarray(getattr(self, name)).shape}, "
                                 f"scores {n}")  # fmt: skip
        p = np.asarray(self.inclusion, dtype=float)
        if p.size and (not np.all(np.isfinite(p)) or p.min() <= 0.0 or p.max() > 1.0):
            raise ValueError("inclusion probabilities must be in (0, 1]")
        if np.any(np.asarray(self.labelled, bool) < (p == CENSUS)):
            raise ValueError("every census photo (inclusion 1) must be labelled")

    def rescored(self, scores: np.ndarray) -> ProductionEvidence:
        """The same photos and labels under another model's scores (a candidate)."""
        return ProductionEvidence(np.asarray(scores, float), self.inclusion, self.labelled,
                                  self.offensive)  # fmt: skip


@dataclass(frozen=True)
class RecallBound:
    """A lower confidence bound on recall at one threshold, with the counts behind it."""

    threshold: float
    recall_lower_bound: float
    caught: int
    census_misses: int
    audited_misses: int  # offensive audited photos below the threshold (k, all strata)
    misses_upper_bound: int  # census misses + Σ upper bounds of the audited strata
    confidence: float
    anytime: bool = False


def binomial_count_upper(k: int, p: float, cap: int, delta: float) -> int:
    """Largest M ≤ `cap` with P(Binomial(M, p) ≤ k) > δ: an exact (1−δ) upper bound on the
    number of events M when each was observed independently with probability p and k were."""
    from scipy import stats

    if not 0.0 < p <= 1.0:
        raise ValueError(f"p must be in (0, 1], got {p}")
    if k > cap:
        raise ValueError(f"observed {k} events but only {cap} could exist")
    if p == 1.0:
        return k
    lo, hi = k, cap  # P(Bin(k, p) ≤ k) = 1 > δ, so lo is feasible
    if stats.binom.cdf(k, hi, p) > delta:
        return hi
    while hi - lo > 1:  # invariant: lo feasible, hi not
        mid = (lo + hi) // 2
        if stats.binom.cdf(k, mid, p) > delta:
            lo = mid
        else:
            hi = mid
    return lo


class _Tally:
    """Counts below any threshold in O(log n): sorted scores per category (built once)."""

    def __init__(self, ev: ProductionEvidence) -> None:
        s = np.asarray(ev.scores, float)
        p = np.asarray(ev.inclusion, float)
        pos = np.asarray(ev.labelled, bool) & np.asarray(ev.offensive, bool)
        census = p == CENSUS
        self.positives = np.sort(s[pos])
        self.census_positives = np.sort(s[pos & census])
        self.strata = {
            float(ph): (np.sort(s[pos & (p == ph)]), np.sort(s[p == ph]))
            for ph in np.unique(p[~census])
        }

    def at(self, t: float) -> tuple[int, int, dict[float, tuple[int, int]]]:
        """(caught, census misses, {p_h: (k_h offensive found, N_h photos)} below `t`)."""
        below = int(np.searchsorted(self.positives, t, side="left"))
        census_misses = int(np.searchsorted(self.census_positives, t, side="left"))
        strata = {
            ph: (int(np.searchsorted(k, t, side="left")), int(np.searchsorted(n, t, side="left")))
            for ph, (k, n) in self.strata.items()
        }
        return int(self.positives.size) - below, census_misses, strata


def recall_bound(
    ev: ProductionEvidence, threshold: float, *, confidence: float = CERTIFY.confidence
) -> RecallBound:
    """Exact (fixed-time) lower confidence bound on recall when approving `scores < threshold`."""
    return _recall_bound(_Tally(ev), threshold, confidence)


def _recall_bound(
    tally: _Tally, threshold: float, confidence: float, *, anytime: bool = False
) -> RecallBound:
    """The bound at `threshold`: exact per-stratum counts (Bonferroni) or the anytime one."""
    caught, census_misses, strata = tally.at(threshold)
    return recall_bound_from_counts(
        caught, census_misses, strata, threshold, confidence=confidence, anytime=anytime
    )


def recall_bound_from_counts(
    caught: int,
    census_misses: int,
    strata: dict[float, tuple[int, int]],
    threshold: float,
    *,
    confidence: float = CERTIFY.confidence,
    anytime: bool = False,
) -> RecallBound:
    """The bound at `threshold` from the counts below it (what `_Tally.at` gives, or an SQL
    aggregate): labelled offensive photos caught, census misses, and per audit stratum
    p_h → (k_h offensive found, N_h photos) below the threshold. A stratum that is never
    audited (p_h = 0) bounds nothing: all its N_h photos count as possible misses."""
    blind = sum(n for p, (_, n) in strata.items() if p <= 0.0)
    strata = {p: kn for p, kn in strata.items() if p > 0.0}
    if anytime:
        upper = anytime_count_upper(strata, 1.0 - confidence) if strata else 0
    else:
        delta_h = (1.0 - confidence) / max(len(strata), 1)
        upper = sum(binomial_count_upper(k, p, n, delta_h) for p, (k, n) in strata.items())
    misses = census_misses + upper + blind
    return RecallBound(
        threshold=float(threshold),
        recall_lower_bound=caught / (caught + misses) if caught + misses else 0.0,
        caught=caught,
        census_misses=census_misses,
        audited_misses=sum(k for k, _ in strata.values()),
        misses_upper_bound=misses,
        confidence=confidence,
        anytime=anytime,
    )


def _log_growth(p: float, lam: np.ndarray) -> np.ndarray:
    """c(λ) = −log((1 − p) + p·e^{−λ/p}) > 0: the martingale's growth per unaudited positive."""
    return -np.log1p(-p + p * np.exp(-lam / p))


def anytime_count_upper(
    strata: dict[float, tuple[int, int]], delta: float, lambdas: tuple[float, ...] = LAMBDAS
) -> int:
    """Upper bound on Σ_h M_h valid at every look at once (confidence sequence), given per
    stratum (p_h → (k_h found, N_h photos)). The worst allocation fills the least-audited
    strata first (c(λ) grows with p), so the bound is the largest such fill that the λ-mixture
    martingale does not reject at level δ."""
    from scipy import special

    lam = np.asarray(lambdas, float)
    order = sorted(strata)  # ascending p: lowest growth first
    evidence = -lam * sum(k / p for p, (k, _) in strata.items())  # (J,) −λ Σ k/p
    growth = {p: _log_growth(p, lam) for p in order}
    found = sum(k for k, _ in strata.values())
    cap = sum(n for _, n in strata.values())
    threshold = math.log(1.0 / delta)

    def log_mix(m: int) -> float:
        left, total = m, evidence.copy()
        for p in order:
            take = min(left, strata[p][1])
            total = total + take * growth[p]
            left -= take
        return float(special.logsumexp(total) - math.log(total.size))

    if log_mix(cap) < threshold:
        return cap
    lo, hi = found, cap  # a count below what was found is impossible; log_mix(found) is small
    if log_mix(lo) >= threshold:
        return lo
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if log_mix(mid) < threshold:
            lo = mid
        else:
            hi = mid
    return lo


def anytime_recall_bound(
    ev: ProductionEvidence, threshold: float, *, confidence: float = CERTIFY.confidence
) -> RecallBound:
    """Lower bound on recall at `threshold` valid simultaneously over every look (after every
    batch), for the admin page; `ev` holds everything decided since the bound started."""
    return _recall_bound(_Tally(ev), threshold, confidence, anytime=True)


def certify_threshold(
    ev: ProductionEvidence,
    *,
    target_recall: float = CERTIFY.target_recall,
    confidence: float = CERTIFY.confidence,
) -> RecallBound | None:
    """The highest threshold whose recall is certified ≥ `target_recall` on production evidence
    (fixed-sequence scan over the labelled positives' scores from the low end), or None."""
    tally = _Tally(ev)
    best: RecallBound | None = None
    for t in np.unique(tally.positives):  # ascending: the safe end first
        bound = _recall_bound(tally, float(t), confidence)
        if bound.recall_lower_bound < target_recall:
            break
        best = bound
    return best
