"""Decision bands: how a score becomes approve / review / remove.

Scores are "higher = more likely offensive". A photo scoring below `approve_below` is approved
automatically; one at or above `remove_at` (when set) is removed automatically; everything else
goes to a person. The thresholds come with the evidence that certifies them (`policy.certify`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from photosieve.config import CERTIFY
from photosieve.records import Decision


@dataclass(frozen=True)
class DecisionPolicy:
    """Certified operating thresholds and the evidence behind them."""

    approve_below: float
    remove_at: float | None = None
    target_recall: float = CERTIFY.target_recall
    target_precision: float | None = None
    confidence: float = CERTIFY.confidence
    # The production prevalence of offensive photos the remove band was certified at; evaluation
    # and reports state the review rate at this same prevalence unless told otherwise.
    prevalence: float = CERTIFY.prevalence
    # Free-form evidence: calibration counts, observed recall, certified bound, data source.
    evidence: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.remove_at is not None and self.remove_at < self.approve_below:
            raise ValueError(
                f"remove_at ({self.remove_at}) must not be below approve_below "
                f"({self.approve_below}): the bands would overlap"
            )

    def decide(self, score: float) -> Decision:
        """The decision for one score."""
        if score < self.approve_below:
            return Decision.APPROVE
        if self.remove_at is not None and score >= self.remove_at:
            return Decision.REMOVE
        return Decision.REVIEW

    def decide_many(self, scores: np.ndarray) -> np.ndarray:
        """Vectorised `decide`: an object array of `Decision` values."""
        scores = np.asarray(scores, dtype=np.float64)
        out = np.full(scores.shape, Decision.REVIEW, dtype=object)
        out[scores < self.approve_below] = Decision.APPROVE
        if self.remove_at is not None:
            out[scores >= self.remove_at] = Decision.REMOVE
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DecisionPolicy:
        data = dict(data)
        if "prevalence" not in data:  # bundles calibrated before the policy carried it
            stated = (data.get("evidence") or {}).get("precision", {}).get("prevalence")
            data["prevalence"] = stated if stated is not None else CERTIFY.prevalence
        return cls(**data)


def decide_or_review(policy: DecisionPolicy | None, score: float) -> Decision:
    """`policy.decide(score)`; review when there is no policy yet (a bundle not calibrated)."""
    return policy.decide(score) if policy is not None else Decision.REVIEW
