"""Bias / variance / data-mismatch diagnosis of a trained model (Andrew Ng's error analysis).

Errors on train, train-dev, validation and test sit next to human-level error (≈ 0: the
reviewers define the labels). The differences between neighbours are the gaps that say what to
work on next:

    avoidable bias      = train − human          → bigger model, train longer
    variance            = train-dev − train      → more data, regularisation
    data mismatch       = validation − train-dev → make training data more like production
    validation overfit  = test − validation      → a bigger validation set

Errors are measured at the operating threshold the product uses (the bundle's certified
`approve_below`, else the threshold reaching 99% recall on validation) and, for reference, at
0.5. The arithmetic is pure functions over arrays with keyword-only options (cleanlab style);
`diagnose_bundle` glues them to a bundle and a split manifest; `print_diagnosis` draws the table.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from photosieve.config import CERTIFY
from photosieve.data.manifest import read_manifest
from photosieve.learn.metrics import as_binary_labels, error_rate, threshold_at_recall
from photosieve.records import Split
from photosieve.scoring import score_rows

# Error levels in pipeline order, and the gap between each one and the next.
LEVELS: tuple[str, ...] = ("human", "train", "train_dev", "validation", "test")
GAPS: dict[str, tuple[str, str]] = {
    "avoidable_bias": ("train", "human"),
    "variance": ("train_dev", "train"),
    "data_mismatch": ("validation", "train_dev"),
    "validation_overfit": ("test", "validation"),
}
REMEDIES: dict[str, str] = {
    "avoidable_bias": "bigger model (wider/deeper head), train longer or with a better "
    "optimiser, a stronger backbone / better features, less regularisation",
    "variance": "more training data, stronger regularisation (dropout, weight decay), "
    "early stopping, ensembling, augmentation",
    "data_mismatch": "make training data more like production (label more primary photos, "
    "down-weight external sources), augment to mimic uploads, error-analyse validation misses",
    "validation_overfit": "a bigger validation set; fewer selection rounds against it; "
    "refresh it with new labelled uploads",
}
GAP_TITLES: dict[str, str] = {
    "avoidable_bias": "avoidable bias (train − human)",
    "variance": "variance (train-dev − train)",
    "data_mismatch": "data mismatch (validation − train-dev)",
    "validation_overfit": "overfitting to validation (test − validation)",
}


@dataclass(frozen=True)
class GapAnalysis:
    """Errors per level, the gaps between them and the largest gap, at one threshold."""

    threshold: float
    errors: dict[str, float]
    gaps: dict[str, float]
    largest: str | None

    @property
    def remedies(self) -> str:
        return REMEDIES[self.largest] if self.largest else "nothing to fix: no gap is positive"


def analyse_gaps(
    *,
    train: float,
    train_dev: float,
    validation: float,
    test: float,
    human: float = 0.0,
    threshold: float = float("nan"),
) -> GapAnalysis:
    """The four gaps from five error rates; names the largest positive one.

    A NaN error (a split that is absent) makes its gaps NaN; they are skipped when ranking.
    """
    errors = {
        "human": human,
        "train": train,
        "train_dev": train_dev,
        "validation": validation,
        "test": test,
    }
    for name, value in errors.items():
        if not (math.isnan(value) or 0.0 <= value <= 1.0):
            raise ValueError(f"{name} error must be a rate in [0, 1] (or NaN), got {value}")
    gaps = {gap: errors[hi] - errors[lo] for gap, (hi, lo) in GAPS.items()}
    ranked = [(v, g) for g, v in gaps.items() if not math.isnan(v) and v > 0]
    largest = max(ranked)[1] if ranked else None
    return GapAnalysis(threshold=threshold, errors=errors, gaps=gaps, largest=largest)


def split_errors(
    scores: np.ndarray, labels: np.ndarray, splits: np.ndarray, *, threshold: float
) -> dict[str, float]:
    """Error rate per split (NaN for a split with no rows) at `threshold`."""

    def error(s: np.ndarray, y: np.ndarray) -> float:
        return error_rate(s, y, threshold=threshold) if len(y) else float("nan")

    return _per_split(scores, labels, splits, error)


def own_recall_errors(
    scores: np.ndarray,
    labels: np.ndarray,
    splits: np.ndarray,
    *,
    recall: float = CERTIFY.target_recall,
) -> dict[str, float]:
    """Error per split at that split's own `recall` threshold: ranking quality alone.

    Separates "the ranking is worse on this split" from "the operating threshold transfers
    badly to it"; NaN for a split without positives.
    """

    def error(s: np.ndarray, y: np.ndarray) -> float:
        if not y.any():
            return float("nan")
        return error_rate(s, y, threshold=threshold_at_recall(s, y, recall=recall))

    return _per_split(scores, labels, splits, error)


def _per_split(
    scores: np.ndarray,
    labels: np.ndarray,
    splits: np.ndarray,
    error: Callable[[np.ndarray, np.ndarray], float],
) -> dict[str, float]:
    """`error(scores, labels)` of each split's rows (every split, empty ones included)."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = as_binary_labels(labels)
    splits = np.asarray(splits).astype(str)
    out: dict[str, float] = {}
    for split in Split:
        mask = splits == split.value
        out[split.value] = error(scores[mask], labels[mask])
    return out


def _analyse(errs: dict[str, float], *, human: float, threshold: float) -> GapAnalysis:
    return analyse_gaps(
        train=errs[Split.TRAIN.value],
        train_dev=errs[Split.TRAIN_DEV.value],
        validation=errs[Split.VALIDATION.value],
        test=errs[Split.TEST.value],
        human=human,
        threshold=threshold,
    )


def diagnose_scores(
    scores: np.ndarray,
    labels: np.ndarray,
    splits: np.ndarray,
    *,
    threshold: float,
    human_error: float = 0.0,
) -> GapAnalysis:
    """Gap analysis of out-of-sample scores at one threshold."""
    errs = split_errors(scores, labels, splits, threshold=threshold)
    return _analyse(errs, human=human_error, threshold=threshold)


@dataclass(frozen=True)
class Diagnosis:
    """The diagnosis at the product's operating threshold and at 0.5, as plain data.

    `own_recall` is the same table with each split at its *own* 99%-recall threshold: where it
    and `operating` disagree, the gap is in how the threshold transfers, not in the ranking.
    """

    operating: GapAnalysis
    at_half: GapAnalysis
    operating_source: str  # where the operating threshold came from
    own_recall: GapAnalysis | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def largest(self) -> str | None:
        return self.operating.largest

    @property
    def remedies(self) -> str:
        return self.operating.remedies

    def rows(self) -> list[dict[str, Any]]:
        """One dict per table line: `kind` (error|gap), `name`, `operating`, `at_0.5`,
        `own_recall` (NaN when not computed), `largest` (the gap to work on)."""
        nan = float("nan")
        own = self.own_recall
        rows: list[dict[str, Any]] = []
        for level in LEVELS:
            rows.append(
                {
                    "kind": "error",
                    "name": level,
                    "operating": self.operating.errors[level],
                    "at_0.5": self.at_half.errors[level],
                    "own_recall": own.errors[level] if own else nan,
                    "largest": False,
                }
            )
        for gap in GAPS:
            rows.append(
                {
                    "kind": "gap",
                    "name": GAP_TITLES[gap],
                    "operating": self.operating.gaps[gap],
                    "at_0.5": self.at_half.gaps[gap],
                    "own_recall": own.gaps[gap] if own else nan,
                    "largest": gap == self.operating.largest,
                }
            )
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "operating_threshold": self.operating.threshold,
            "operating_source": self.operating_source,
            "largest_gap": self.largest,
            "largest_gap_own_recall": self.own_recall.largest if self.own_recall else None,
            "remedies": self.remedies,
            "rows": self.rows(),
            "notes": list(self.notes),
        }


def diagnose_arrays(
    scores: np.ndarray,
    labels: np.ndarray,
    splits: np.ndarray,
    *,
    operating_threshold: float | None = None,
    target_recall: float = CERTIFY.target_recall,
    human_error: float = 0.0,
) -> Diagnosis:
    """Diagnosis from scores; without a threshold, the one reaching `target_recall` on val."""
    labels = as_binary_labels(labels)
    splits = np.asarray(splits).astype(str)
    source = "bundle policy (approve_below)"
    if operating_threshold is None:
        val = splits == Split.VALIDATION.value
        if not labels[val].any():
            raise ValueError("no offensive photos in the validation split to set a threshold")
        operating_threshold = threshold_at_recall(scores[val], labels[val], recall=target_recall)
        source = f"{target_recall:.0%} recall on validation"
    return Diagnosis(
        operating=diagnose_scores(
            scores, labels, splits, threshold=operating_threshold, human_error=human_error
        ),
        at_half=diagnose_scores(scores, labels, splits, threshold=0.5, human_error=human_error),
        operating_source=source,
        own_recall=_analyse(
            own_recall_errors(scores, labels, splits, recall=target_recall),
            human=human_error,
            threshold=float("nan"),
        ),
    )


def diagnose_bundle(
    bundle: Any,
    manifest: str | Path | pd.DataFrame,
    *,
    workdir: Path | None = None,
    embeddings: np.ndarray | None = None,
    human_error: float = 0.0,
    progress: bool = False,
) -> Diagnosis:
    """Diagnose a `ModelBundle` on a split manifest (embeddings from the vision cache; a
    cascade is scored through `scoring.score_rows`, its second backbone included)."""
    frame = manifest if isinstance(manifest, pd.DataFrame) else read_manifest(manifest)
    if embeddings is None:
        scores = score_rows(bundle, frame, workdir=workdir, progress=progress)
    else:
        scores = bundle.score_embeddings(embeddings)
    threshold = bundle.policy.approve_below if bundle.policy is not None else None
    target = float(bundle.train_config.get("target_recall", CERTIFY.target_recall))
    diagnosis = diagnose_arrays(
        scores,
        frame["label"].to_numpy(),
        frame["split"].to_numpy(),
        operating_threshold=threshold,
        target_recall=target,
        human_error=human_error,
    )
    counts = frame["split"].value_counts()
    diagnosis.notes.append(
        "rows: " + ", ".join(f"{s.value}={int(counts.get(s.value, 0))}" for s in Split)
    )
    if "source" in frame.columns:
        external = frame["source"].astype(str) != "primary"
        for split in (Split.TRAIN, Split.TRAIN_DEV):
            rows = frame["split"] == split.value
            if (rows & external).any():
                diagnosis.notes.append(
                    f"{split.value} includes {int((rows & external).sum())} of {int(rows.sum())}"
                    " photos from external sources (validation/test are primary only): part of"
                    " the data-mismatch gap is that difference"
                )
    return diagnosis
