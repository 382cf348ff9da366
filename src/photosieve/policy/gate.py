"""The promotion gate: may a candidate model replace the live one? A pure function over scores.

A candidate passes when, on labelled photos it never trained on,

1. **recall is certified** at the target at the candidate's own approve threshold ``t_c``:
   every source that holds enough positives to certify the target at all
   (`certify.min_positives`) must certify it, and at least one source must. Sources: the
   held-out calibration split (exact Clopper–Pearson bound on the miss rate at ``t_c``; ``t_c``
   was chosen there by fixed-sequence testing, so the bound at it is valid) and production
   evidence from the shadow period (census of the live review band + audits, the candidate's
   shadow scores in place of the live ones: `production.recall_bound`);
2. **its review rate is not worse**: on the same photos, the share the candidate would not
   auto-approve (score ≥ ``t_c``) is at most the live model's share (score ≥ ``t_live``) plus
   `tolerance` (0 by default), on every source. On the held-out split both are stated at the
   production prevalence (positives and negatives weighted π and 1 − π), as reports state it;
   in the shadow period it is the plain share of the uploads both models scored.

The held-out split may hold photos the live model trained on; that flatters the live model's
review rate, so it only makes the gate stricter. `GateResult.reasons` says why a candidate is
refused (`no_labelled_data`, `cannot_certify`, `worse_review_rate`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from photosieve.config import CERTIFY
from photosieve.policy.certify import cp_upper, min_positives
from photosieve.policy.production import ProductionEvidence, recall_bound
from photosieve.records import binary_labels


@dataclass(frozen=True)
class HeldOut:
    """Labelled photos the candidate never trained on, scored by both models (row-aligned)."""

    labels: np.ndarray  # (n,) offensive / ok (or 1 / 0)
    candidate_scores: np.ndarray  # (n,)
    live_scores: np.ndarray  # (n,)


@dataclass(frozen=True)
class ShadowPeriod:
    """What the shadow period gave: labelled evidence under the live model's scores with the
    candidate's scores of the same uploads, and both models' scores of every shadowed upload."""

    evidence: ProductionEvidence  # scores = the live model's
    candidate_evidence_scores: np.ndarray  # (n,) aligned with `evidence`
    live_scores: np.ndarray  # (m,) every upload scored in shadow
    candidate_scores: np.ndarray  # (m,)


@dataclass(frozen=True)
class SourceCheck:
    """One labelled source's verdict."""

    source: str  # "held_out" | "production"
    photos: int
    positives: int
    positives_required: int
    recall_lower_bound: float
    certified: bool
    candidate_review_rate: float
    live_review_rate: float

    @property
    def can_certify(self) -> bool:
        return self.positives >= self.positives_required


@dataclass(frozen=True)
class GateResult:
    """The gate's decision, with every number behind it."""

    passed: bool
    reasons: list[str]
    messages: list[str]
    candidate_threshold: float
    live_threshold: float
    target_recall: float
    confidence: float
    tolerance: float
    checks: list[SourceCheck] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _share_at_or_above(scores: np.ndarray, threshold: float) -> float:
    return float(np.mean(scores >= threshold)) if scores.size else float("nan")


def _held_out_check(
    data: HeldOut, t_c: float, t_live: float, *, target: float, confidence: float, prev: float
) -> SourceCheck:
    y = binary_labels(data.labels)
    cand = np.asarray(data.candidate_scores, float)
    live = np.asarray(data.live_scores, float)
    if not (cand.shape == live.shape == y.shape):
        raise ValueError(f"held-out arrays differ in length: {y.size}, {cand.size}, {live.size}")
    n_pos = int(y.sum())
    misses = int(np.count_nonzero(cand[y] < t_c))
    bound = 1.0 - float(cp_upper(misses, n_pos, 1.0 - confidence)) if n_pos else 0.0

    def rate(scores: np.ndarray, t: float) -> float:
        if n_pos and (~y).any():  # at the production prevalence
            return prev * _share_at_or_above(scores[y], t) + (1 - prev) * _share_at_or_above(
                scores[~y], t
            )
        return _share_at_or_above(scores, t)

    return SourceCheck(
        source="held_out",
        photos=int(y.size),
        positives=n_pos,
        positives_required=min_positives(target, confidence),
        recall_lower_bound=bound,
        certified=bound >= target,
        candidate_review_rate=rate(cand, t_c),
        live_review_rate=rate(live, t_live),
    )


def _production_check(
    data: ShadowPeriod, t_c: float, t_live: float, *, target: float, confidence: float
) -> SourceCheck:
    ev = data.evidence.rescored(np.asarray(data.candidate_evidence_scores, float))
    n_pos = int(np.count_nonzero(np.asarray(ev.labelled, bool) & np.asarray(ev.offensive, bool)))
    bound = recall_bound(ev, t_c, confidence=confidence).recall_lower_bound if n_pos else 0.0
    return SourceCheck(
        source="production",
        photos=int(np.asarray(data.candidate_scores).size),
        positives=n_pos,
        positives_required=min_positives(target, confidence),
        recall_lower_bound=bound,
        certified=bound >= target,
        candidate_review_rate=_share_at_or_above(np.asarray(data.candidate_scores, float), t_c),
        live_review_rate=_share_at_or_above(np.asarray(data.live_scores, float), t_live),
    )


def gate(
    candidate_threshold: float,
    live_threshold: float,
    *,
    held_out: HeldOut | None = None,
    shadow: ShadowPeriod | None = None,
    target_recall: float = CERTIFY.target_recall,
    confidence: float = CERTIFY.confidence,
    prevalence: float = CERTIFY.prevalence,
    tolerance: float = 0.0,
) -> GateResult:
    """Whether the candidate (approve iff score < `candidate_threshold`) may replace the live
    model (approve iff score < `live_threshold`); see the module docstring for the rules."""
    if tolerance < 0:
        raise ValueError(f"tolerance must be ≥ 0, got {tolerance}")
    checks: list[SourceCheck] = []
    if held_out is not None and np.asarray(held_out.labels).size:
        checks.append(
            _held_out_check(
                held_out,
                candidate_threshold,
                live_threshold,
                target=target_recall,
                confidence=confidence,
                prev=prevalence,
            )
        )
    if shadow is not None and np.asarray(shadow.candidate_scores).size:
        checks.append(
            _production_check(
                shadow,
                candidate_threshold,
                live_threshold,
                target=target_recall,
                confidence=confidence,
            )
        )
    reasons: list[str] = []
    messages: list[str] = []
    if not checks:
        reasons.append("no_labelled_data")
        messages.append("no labelled photos the candidate never trained on: nothing to certify")
    able = [c for c in checks if c.can_certify]
    failed = [c for c in able if not c.certified]
    if checks and (not able or failed):
        reasons.append("cannot_certify")
        if not able:
            messages.append(
                f"recall ≥ {target_recall:g} at {confidence:.0%} confidence cannot be certified: "
                + "; ".join(
                    f"{c.source} has {c.positives} offensive photos, {c.positives_required} needed"
                    for c in checks
                )
            )
        for c in failed:
            messages.append(
                f"{c.source}: recall lower bound {c.recall_lower_bound:.4f} at the candidate's "
                f"threshold {candidate_threshold:.6g} is below the target {target_recall:g}"
            )
    for c in checks:
        if c.candidate_review_rate > c.live_review_rate + tolerance:
            if "worse_review_rate" not in reasons:
                reasons.append("worse_review_rate")
            messages.append(
                f"{c.source}: the candidate's review rate {c.candidate_review_rate:.4f} is above "
                f"the live model's {c.live_review_rate:.4f}"
                + (f" + tolerance {tolerance:g}" if tolerance else "")
            )
    return GateResult(
        passed=not reasons,
        reasons=reasons,
        messages=messages,
        candidate_threshold=float(candidate_threshold),
        live_threshold=float(live_threshold),
        target_recall=target_recall,
        confidence=confidence,
        tolerance=tolerance,
        checks=checks,
    )
