"""Evaluation of a decision policy on labelled scores: bands, recall, review rate, per group.

Functions over plain arrays (cleanlab-style): `band_metrics` for one set of photos,
`evaluate_policy` for a whole manifest with per-source / per-origin breakdowns. The review rate
is reported as measured *and* at a stated production prevalence π,
``π·P(review | offensive) + (1−π)·P(review | ok)``, because labelled sets over-represent
offensive photos.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from photosieve.config import CERTIFY
from photosieve.policy.bands import DecisionPolicy
from photosieve.policy.certify import cp_interval
from photosieve.records import Decision, binary_labels

DECISIONS = (Decision.APPROVE.value, Decision.REVIEW.value, Decision.REMOVE.value)


def _rate(k: int, n: int) -> float:
    return k / n if n else float("nan")


def band_metrics(
    scores: np.ndarray,
    labels: Sequence[Any] | np.ndarray,
    policy: DecisionPolicy,
    *,
    prevalence: float = CERTIFY.prevalence,
    confidence: float = CERTIFY.confidence,
) -> dict[str, Any]:
    """Counts per (class, band) and the rates a deployment decision needs, for one set."""
    if not 0.0 < prevalence < 1.0:
        raise ValueError(f"prevalence must be strictly between 0 and 1, got {prevalence}")
    y = binary_labels(labels)
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != y.shape:
        raise ValueError(f"{s.size} scores but {y.size} labels")
    decisions = np.asarray([str(d) for d in policy.decide_many(s)], dtype=object)
    counts = {
        (cls, d): int(np.count_nonzero((y == is_pos) & (decisions == d)))
        for cls, is_pos in (("offensive", True), ("ok", False))
        for d in DECISIONS
    }
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    missed = counts[("offensive", "approve")]
    caught = n_pos - missed
    removed = counts[("offensive", "remove")] + counts[("ok", "remove")]
    review_pos = _rate(counts[("offensive", "review")], n_pos)
    review_neg = _rate(counts[("ok", "review")], n_neg)
    review_pi = prevalence * review_pos + (1 - prevalence) * review_neg
    recall_lo, recall_hi = cp_interval(caught, n_pos, confidence)
    prec_lo, prec_hi = cp_interval(counts[("offensive", "remove")], removed, confidence)
    remove_pos, remove_neg = (
        _rate(counts[("offensive", "remove")], n_pos),
        _rate(counts[("ok", "remove")], n_neg),
    )
    denom = prevalence * remove_pos + (1 - prevalence) * remove_neg
    both = n_pos > 0 and n_neg > 0
    return {
        "n": int(s.size),
        "n_offensive": n_pos,
        "n_ok": n_neg,
        "counts": {f"{cls}/{d}": v for (cls, d), v in counts.items()},
        "missed_offensive": missed,
        "recall": _rate(caught, n_pos),
        "recall_ci": [recall_lo, recall_hi],
        "remove_precision": _rate(counts[("offensive", "remove")], removed),
        "remove_precision_ci": [prec_lo, prec_hi],
        "remove_precision_at_prevalence": prevalence * remove_pos / denom if denom else None,
        "wrongly_removed_ok": counts[("ok", "remove")],
        "review_rate": _rate(counts[("offensive", "review")] + counts[("ok", "review")], s.size),
        "review_rate_at_prevalence": review_pi,
        "automatic_share": 1
        - _rate(counts[("offensive", "review")] + counts[("ok", "review")], s.size),
        "automatic_share_at_prevalence": 1 - review_pi,
        "roc_auc": float(roc_auc_score(y, s)) if both else float("nan"),
        "average_precision": float(average_precision_score(y, s)) if both else float("nan"),
    }


def confusion_table(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """Rows offensive/ok, columns approve/review/remove: the band confusion matrix."""
    counts = metrics["counts"]
    return pd.DataFrame(
        [[counts[f"{cls}/{d}"] for d in DECISIONS] for cls in ("offensive", "ok")],
        index=pd.Index(["offensive", "ok"], name="label"),
        columns=list(DECISIONS),
    )


GROUP_COLUMNS = (
    "n", "n_offensive", "missed_offensive", "recall", "review_rate",
    "review_rate_at_prevalence", "automatic_share", "wrongly_removed_ok",
)  # fmt: skip


@dataclass
class Evaluation:
    """A policy's results on one labelled set, overall and per group."""

    overall: dict[str, Any]
    prevalence: float
    confidence: float
    by_group: dict[str, pd.DataFrame] = field(default_factory=dict)

    @property
    def confusion(self) -> pd.DataFrame:
        return confusion_table(self.overall)

    def to_dict(self) -> dict[str, Any]:
        return {
            "overall": self.overall,
            "prevalence": self.prevalence,
            "confidence": self.confidence,
            "by_group": {k: v.reset_index().to_dict("records") for k, v in self.by_group.items()},
        }


def evaluate_policy(
    scores: np.ndarray,
    labels: Sequence[Any] | np.ndarray,
    policy: DecisionPolicy,
    *,
    prevalence: float = CERTIFY.prevalence,
    confidence: float = CERTIFY.confidence,
    groups: Mapping[str, Sequence[Any] | np.ndarray] | None = None,
) -> Evaluation:
    """Evaluate `policy` on scores/labels; `groups` maps a column name to per-photo values."""
    y = binary_labels(labels)
    s = np.asarray(scores, dtype=np.float64)
    overall = band_metrics(s, y, policy, prevalence=prevalence, confidence=confidence)
    by_group: dict[str, pd.DataFrame] = {}
    for name, values in (groups or {}).items():
        v = np.asarray(values, dtype=object)
        if v.shape != s.shape:
            raise ValueError(f"group column {name!r} has {v.size} values for {s.size} scores")
        rows = []
        for value in sorted({str(x) for x in v}):
            mask = v.astype(str) == value
            m = band_metrics(s[mask], y[mask], policy, prevalence=prevalence, confidence=confidence)
            rows.append({name: value, **{c: m[c] for c in GROUP_COLUMNS}})
        by_group[name] = pd.DataFrame(rows).set_index(name)
    return Evaluation(overall, prevalence, confidence, by_group)
