"""The team forecast: how many reviewers the forum needs at 1M, 10M and 100M users.

`reviewers_needed` turns the upload volume and the measured rates (review share, audits,
appeals, decisions per reviewer-hour) into people; `certified_review_curve` answers the other
half of the question — how much cheaper the certified threshold gets as labelled production
positives accumulate: with n positives the exact Clopper–Pearson certificate allows k(n)
misses, the threshold lands near the (k+1)/(n+1) quantile of the offensive photos' scores, and
the review rate is what the model's score distributions give at that threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from photosieve.config import AUDIT_RATE, CERTIFY
from photosieve.policy.certify import cp_upper
from photosieve.store.throughput import ReviewThroughput

USER_COUNTS = (1_000_000, 10_000_000, 100_000_000)
# Measured rates replace the assumptions once the database holds this many of the thing measured.
MIN_MEASURED = 200
# Labelled production positives at which the certificate curve is shown.
CURVE_POSITIVES = (299, 473, 1_049, 3_000, 10_000, 30_000)


@dataclass(frozen=True)
class Workload:
    """The named assumptions of a forecast (measured where the database has them)."""

    uploads_per_user_per_day: float = 1 / 100  # an avatar change every 100 days
    review_share: float = 0.10  # uploads the model sends to a person (at production prevalence)
    remove_share: float = 0.0  # uploads the model removes automatically
    audit_rate: float = AUDIT_RATE  # share of auto-approved uploads audited
    appeal_rate: float = 0.2  # share of removals appealed
    decisions_per_hour: float = 300.0  # per reviewer, measured from the queue history
    hours_per_day: float = 6.0  # productive review hours per reviewer per day
    prevalence: float = CERTIFY.prevalence

    def items_per_upload(self) -> float:
        """Queue items one upload causes on average: review band, audits and appeals."""
        approved = max(0.0, 1.0 - self.review_share - self.remove_share)
        return self.review_share + approved * self.audit_rate + self.remove_share * self.appeal_rate


def measured_rates(t: ReviewThroughput, min_measured: int = MIN_MEASURED) -> dict[str, float]:
    """The `Workload` fields the queue history measures well enough (≥ `min_measured` each)."""
    found: dict[str, float] = {}
    if t.decisions >= min_measured and t.decisions_per_hour:
        found["decisions_per_hour"] = t.decisions_per_hour
    if t.uploads >= min_measured:
        for name, decision in (("review_share", "review"), ("remove_share", "remove")):
            share = t.share(decision)
            if share is not None:
                found[name] = share
        if t.audit_rate is not None:
            found["audit_rate"] = t.audit_rate
    if t.model_decisions.get("remove", 0) >= min_measured and t.appeal_rate is not None:
        found["appeal_rate"] = t.appeal_rate
    return found


def reviewers_needed(
    workload: Workload, users: Sequence[int] = USER_COUNTS
) -> list[dict[str, float]]:
    """Per user count: uploads a day, queue items a day, and reviewers (fractional, ≥ 0)."""
    per_reviewer = workload.decisions_per_hour * workload.hours_per_day
    rows = []
    for n in users:
        uploads = n * workload.uploads_per_user_per_day
        items = uploads * workload.items_per_upload()
        reviewers = items / per_reviewer if per_reviewer > 0 else float("inf")
        rows.append({"users": float(n), "uploads_per_day": uploads, "items_per_day": items,
                     "reviewers": reviewers})  # fmt: skip
    return rows


def misses_allowed(n_positives: int, target_recall: float, confidence: float) -> int:
    """Largest miss count k whose exact one-sided bound still certifies `target_recall` with
    `n_positives` positives (−1 when even zero misses cannot)."""
    alpha, delta = 1.0 - target_recall, 1.0 - confidence
    ks = np.arange(n_positives)
    ok = np.flatnonzero(cp_upper(ks, n_positives, delta) <= alpha)
    return int(ok[-1]) if ok.size else -1


def certified_review_curve(
    positive_scores: np.ndarray,
    negative_scores: np.ndarray,
    n_positives: Sequence[int],
    *,
    target_recall: float = CERTIFY.target_recall,
    confidence: float = CERTIFY.confidence,
    prevalence: float = CERTIFY.prevalence,
) -> list[dict[str, Any]]:
    """Expected certified review rate (at `prevalence`) with each number of labelled positives."""
    pos = np.sort(np.asarray(positive_scores, dtype=np.float64))
    neg = np.asarray(negative_scores, dtype=np.float64)
    rows: list[dict[str, Any]] = []
    for n in n_positives:
        k = misses_allowed(n, target_recall, confidence)
        if k < 0:
            rows.append({"positives": n, "misses_allowed": None, "review_rate": None})
            continue
        q = (k + 1) / (n + 1)  # the expected miss rate of the (k+1)-th lowest positive
        t = float(np.quantile(pos, q))
        review = prevalence * float(np.mean(pos >= t)) + (1 - prevalence) * float(np.mean(neg >= t))
        rows.append({"positives": n, "misses_allowed": k, "expected_miss_rate": q,
                     "threshold": t, "review_rate": review})  # fmt: skip
    return rows


def assumptions(workload: Workload) -> dict[str, float]:
    """The workload as a plain dict (for --json and the admin page)."""
    return {k: float(v) for k, v in asdict(workload).items()}
