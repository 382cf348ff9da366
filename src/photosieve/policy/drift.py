"""Drift of production from the calibration evidence: when the certificate stops describing it.

The certificate (`policy.certify`) holds for photos drawn like the calibration sample. Three
signals say production no longer looks like it:

- **score distribution**: the population stability index (PSI) of the live model's recent
  scores against the calibration scores mixed at the policy's prevalence, over ten bins cut at
  the reference's deciles (PSI > 0.25 is the usual "major shift" line);
- **band shares**: the live shares of approve / review / remove against those the calibration
  scores give at the policy's thresholds, by a Wald χ² test that counts both samples' error: the
  reference's shares are themselves estimated (from ~3,000 calibration photos), and a test that
  took them as exact raised the alarm on 3–4% of 2,000-upload windows of an unchanged
  population (the bench's real scores, `bench/README.md` "source_holdout.py"; a simulation,
  `tests/policy/test_drift.py`) — several false alarms a week at a million uploads;
- **audit-based recall**: an upper confidence bound on recall from the census and audits
  (exact binomial lower bounds on the misses per audit stratum) below the target — the audits
  show, at the policy's confidence, that the promise is broken.

`reference_distribution` is computed at calibration and stored in the policy's evidence
(`evidence["reference"]`); bundles calibrated before it carry none, and drift is then reported
as unavailable (recalibrate to get it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from photosieve.records import binary_labels

BANDS = ("approve", "review", "remove")
REFERENCE_BINS = 10
QUANTILES = np.linspace(0.0, 1.0, 201)
EPS = 1e-4  # floor of a bin's share in the PSI (an empty bin would be infinite)


def band_shares(
    pos: np.ndarray, neg: np.ndarray, prevalence: float, approve_below: float,
    remove_at: float | None,
) -> dict[str, float]:  # fmt: skip
    """The shares of approve / review / remove the calibration scores give at `prevalence`."""

    def share(mask_pos: np.ndarray, mask_neg: np.ndarray) -> float:
        return prevalence * float(mask_pos.mean()) + (1 - prevalence) * float(mask_neg.mean())

    approve = share(pos < approve_below, neg < approve_below)
    remove = 0.0 if remove_at is None else share(pos >= remove_at, neg >= remove_at)
    return {"approve": approve, "review": max(0.0, 1.0 - approve - remove), "remove": remove}


def reference_distribution(
    scores: Sequence[float] | np.ndarray,
    labels: Sequence[Any] | np.ndarray,
    *,
    prevalence: float,
    approve_below: float,
    remove_at: float | None,
    bins: int = REFERENCE_BINS,
) -> dict[str, Any]:
    """What production should look like by the calibration sample: decile edges of the scores
    mixed at `prevalence`, the expected share per bin and per band, each class's score quantiles
    and the lowest positive's score (the fail-safe threshold: no calibration positive is below
    it)."""
    y = binary_labels(labels)
    s = np.asarray(scores, dtype=np.float64).ravel()
    pos, neg = s[y], s[~y]
    if pos.size == 0 or neg.size == 0:
        raise ValueError("a reference distribution needs offensive and ok calibration photos")
    weights = np.where(y, prevalence / pos.size, (1.0 - prevalence) / neg.size)  # sums to 1
    order = np.argsort(s, kind="stable")
    cumulative = np.cumsum(weights[order])
    cuts = np.searchsorted(cumulative, np.arange(1, bins) / bins)
    edges = np.unique(s[order][np.minimum(cuts, s.size - 1)])
    return {
        "edges": [float(e) for e in edges],
        "expected": [float(x) for x in _mixture_shares(pos, neg, edges, prevalence)],
        "bands": band_shares(pos, neg, prevalence, approve_below, remove_at),
        # per class, for the band test's estimate of the reference's own sampling error
        "class_bands": {
            "offensive": band_shares(pos, neg, 1.0, approve_below, remove_at),
            "ok": band_shares(pos, neg, 0.0, approve_below, remove_at),
        },
        "prevalence": prevalence,
        "n_positives": int(pos.size),
        "n_negatives": int(neg.size),
        "min_positive_score": float(pos.min()),
        # Score quantiles per class: the team forecast's certificate curve (admin page).
        "positive_quantiles": [float(q) for q in np.quantile(pos, QUANTILES)],
        "negative_quantiles": [float(q) for q in np.quantile(neg, QUANTILES)],
        "approve_below": float(approve_below),
        "remove_at": None if remove_at is None else float(remove_at),
    }


def _bin_counts(scores: np.ndarray, edges: np.ndarray) -> np.ndarray:
    index = np.searchsorted(edges, scores, side="right")  # bin i: edges[i-1] ≤ s < edges[i]
    return np.bincount(index, minlength=edges.size + 1)


def _mixture_shares(pos: np.ndarray, neg: np.ndarray, edges: np.ndarray, pi: float) -> np.ndarray:
    p = _bin_counts(pos, edges) / pos.size
    n = _bin_counts(neg, edges) / neg.size
    return pi * p + (1 - pi) * n


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index Σ (a − e)·ln(a / e) of two share vectors (each floored)."""
    e = np.maximum(np.asarray(expected, float), EPS)
    a = np.maximum(np.asarray(actual, float), EPS)
    return float(np.sum((a - e) * np.log(a / e)))


def band_test_p_value(reference: Mapping[str, Any], counts: np.ndarray) -> float:
    """p-value of live band `counts` (approve, review, remove) against the reference's shares.

    A Wald χ² test on (approve, remove) — review is the rest — whose covariance adds the
    reference's own sampling error (its per-class shares from `n_positives` / `n_negatives`
    calibration photos, mixed at its prevalence) to the live window's multinomial error. A
    reference without per-class shares (calibrated before they were stored) is taken as exact
    (Pearson's χ²)."""
    from scipy import stats

    n = float(counts.sum())
    expected = np.array([float(reference["bands"].get(b, 0.0)) for b in BANDS])
    by_class = reference.get("class_bands")
    if not by_class:
        f_exp = np.maximum(expected, EPS)
        return float(stats.chisquare(counts, f_exp / f_exp.sum() * n).pvalue)

    def covariance(shares: np.ndarray, size: float) -> np.ndarray:
        return (np.diag(shares) - np.outer(shares, shares)) / size

    pi = float(reference["prevalence"])
    offensive = np.array([float(by_class["offensive"][b]) for b in BANDS])
    ok = np.array([float(by_class["ok"][b]) for b in BANDS])
    sigma = (
        covariance(expected, n)
        + pi**2 * covariance(offensive, float(reference["n_positives"]))
        + (1.0 - pi) ** 2 * covariance(ok, float(reference["n_negatives"]))
    )
    free = [i for i in (0, 2) if 0.0 < expected[i] < 1.0]  # a band that cannot vary is left out
    if not free:
        return 1.0
    diff = (counts / n - expected)[free]
    statistic = float(diff @ np.linalg.pinv(sigma[np.ix_(free, free)]) @ diff)
    return float(stats.chi2.sf(statistic, df=len(free)))


def binomial_count_lower(k: int, p: float, delta: float) -> int:
    """Smallest M with P(Binomial(M, p) ≥ k) > δ: an exact (1−δ) lower bound on the number of
    events when each was seen independently with probability p and k were."""
    from scipy import stats

    if k == 0 or p >= 1.0:
        return k

    def feasible(m: int) -> bool:
        return bool(stats.binom.sf(k - 1, m, p) > delta)  # grows with m

    if feasible(k):
        return k
    lo, hi = k, 2 * k  # invariant: lo infeasible
    while not feasible(hi):
        lo, hi = hi, 2 * hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if feasible(mid) else (mid, hi)
    return hi


def recall_upper_bound(
    caught: int, census_misses: int, strata: Mapping[float, tuple[int, int]], confidence: float
) -> float | None:
    """An upper confidence bound on recall from production evidence (None without positives):
    exact lower bounds on each audit stratum's misses (Bonferroni across strata)."""
    audited = {p: k for p, (k, _) in strata.items() if p > 0.0}
    delta_h = (1.0 - confidence) / max(len(audited), 1)
    misses = census_misses + sum(binomial_count_lower(k, p, delta_h) for p, k in audited.items())
    return caught / (caught + misses) if caught + misses else None


@dataclass(frozen=True)
class DriftReport:
    """The verdict on the latest uploads; `raised` means re-certification is needed."""

    available: bool
    uploads: int = 0
    psi: float | None = None
    psi_limit: float | None = None
    bands_live: dict[str, float] = field(default_factory=dict)
    bands_expected: dict[str, float] = field(default_factory=dict)
    band_p_value: float | None = None
    recall_upper_bound: float | None = None
    target_recall: float | None = None
    reasons: tuple[str, ...] = ()
    note: str = ""

    @property
    def raised(self) -> bool:
        return bool(self.reasons)


def assess(
    reference: Mapping[str, Any] | None,
    scores: np.ndarray,
    *,
    recall_upper: float | None,
    target_recall: float,
    min_uploads: int,
    psi_limit: float,
    band_p_value: float,
) -> DriftReport:
    """Compare the latest uploads' `scores` with the `reference`. Their bands are taken at the
    certified thresholds (not the decisions made): a fail-safe threshold does not feed the
    alarm that switched it on."""
    if not reference:
        return DriftReport(False, note="the bundle has no calibration reference; recalibrate it")
    reasons = []
    if recall_upper is not None and recall_upper < target_recall:
        reasons.append(f"audits bound production recall below {target_recall:g} "
                       f"(upper bound {recall_upper:.4f})")  # fmt: skip
    n = int(np.asarray(scores).size)
    if n < min_uploads:
        note = f"{n} uploads of this model; the score check needs {min_uploads}"
        return DriftReport(
            True, uploads=n, recall_upper_bound=recall_upper, target_recall=target_recall,
            reasons=tuple(reasons), note=note,
        )  # fmt: skip
    edges = np.asarray(reference["edges"], float)
    counts_per_bin = _bin_counts(np.asarray(scores, float), edges)
    # Half a photo added to every bin (Jeffreys): an empty bin of a small window is not read as
    # a share of zero (which a floored PSI turns into a large false shift).
    live = (counts_per_bin + 0.5) / (n + 0.5 * counts_per_bin.size)
    value = psi(np.asarray(reference["expected"], float), live)
    if value > psi_limit:
        reasons.append(f"score distribution shifted (PSI {value:.3f} > {psi_limit:g})")
    expected = {b: float(reference["bands"].get(b, 0.0)) for b in BANDS}
    live_scores = np.asarray(scores, float)
    remove_at = reference.get("remove_at")
    approved = int(np.count_nonzero(live_scores < reference["approve_below"]))
    removed = 0 if remove_at is None else int(np.count_nonzero(live_scores >= remove_at))
    counts = np.array([approved, n - approved - removed, removed], float)
    p_value = band_test_p_value(reference, counts)
    if p_value < band_p_value:
        reasons.append(f"band shares differ from calibration (χ² p = {p_value:.2g})")
    return DriftReport(
        True, uploads=n, psi=value, psi_limit=psi_limit,
        bands_live={b: float(c / n) for b, c in zip(BANDS, counts, strict=True)},
        bands_expected=expected, band_p_value=p_value, recall_upper_bound=recall_upper,
        target_recall=target_recall, reasons=tuple(reasons),
    )  # fmt: skip
