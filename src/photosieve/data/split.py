"""Split planner: ingested photos → train / train_dev / validation / calibration / test.

Without explicit fractions the calibration share comes from `plan.plan_by_workload`: the
calibration size (positives) that minimises the expected certified review rate, traded against
training positives; the rest is shared by `plan.REST_RATIOS`.

Rules, in the order they bind:
1. A duplicate group (`group_id`) is never split: whole groups are assigned.
2. A group with any external photo (`source != "primary"`) is training data only: train, or
   train_dev, which mirrors the training mix (external photos included, in the same proportion)
   so that train vs train_dev error measures variance, and train_dev vs validation measures
   data mismatch. Validation, calibration and test hold primary photos only.
3. Within primary (and within external) photos, each split gets its fraction of the positives
   and of the negatives separately (stratified): targets are rounded by largest remainder, then
   groups, largest first, go to the split with the largest relative unmet demand for their labels.
   With mostly single photos this lands every split within one photo of the overall positive share.
4. Everything random comes from one seed: the same input and seed give the same manifest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from photosieve.config import CERTIFY
from photosieve.data.dedupe import NEAR_DUPLICATE_DISTANCE, duplicate_groups
from photosieve.data.plan import (
    CERTIFYING_SPLITS,
    CalibrationOption,
    certifiable_recall,
    check_fractions,
    plan_by_workload,
    positives_needed,
)
from photosieve.records import PRIMARY_SOURCE, Label, Split

SPLITS: tuple[Split, ...] = tuple(Split)
TRAINING_SPLITS: tuple[Split, ...] = (Split.TRAIN, Split.TRAIN_DEV)


@dataclass(frozen=True)
class SplitResult:
    """The split manifest, its per-split summary, and what made it."""

    manifest: pd.DataFrame  # input rows (same order) with a `split` column
    summary: pd.DataFrame  # one row per split: photos, positives, sources, certifiable recall
    fractions: dict[Split, float]
    seed: int
    target_recall: float
    confidence: float
    positives_needed: int
    fingerprint: str
    # When the planner chose the fractions: its pick and the expected-workload curve it chose from.
    calibration_choice: CalibrationOption | None = None
    calibration_curve: list[CalibrationOption] = field(default_factory=list)

    def plan_record(self) -> dict[str, Any] | None:
        """The planner's choice and curve as plain data (for split.json); None if not planned."""
        if self.calibration_choice is None:
            return None
        return {
            "rule": "smallest calibration within 5% of the lowest expected certified review "
            "rate; q ~ Beta(k+1, n-k), binormal ROC with a learning-curve penalty",
            "chosen": asdict(self.calibration_choice),
            "curve": [asdict(o) for o in self.calibration_curve],
        }

    @property
    def shortfalls(self) -> dict[Split, int]:
        """Positives each certifying split lacks for the target (only splits that fall short)."""
        short = dict(zip(self.summary["split"], self.summary["shortfall"], strict=True))
        return {s: int(short[s.value]) for s in CERTIFYING_SPLITS if int(short[s.value]) > 0}


def data_fingerprint(manifest: pd.DataFrame) -> str:
    """SHA-256 over the sorted `sha256,label,split` lines: same photos, labels, splits ⇒ same."""
    lines = sorted(
        f"{s},{lab},{sp}"
        for s, lab, sp in zip(manifest["sha256"], manifest["label"], manifest["split"], strict=True)
    )
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _rounded_targets(total: int, fractions: np.ndarray) -> np.ndarray:
    """Integer counts summing to `total`, proportional to `fractions` (largest remainder)."""
    if total == 0 or fractions.sum() == 0:
        return np.zeros(len(fractions), dtype=np.int64)
    exact = total * fractions / fractions.sum()
    counts = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: total - int(counts.sum())]] += 1
    return counts


def _assign_groups(
    positives: np.ndarray,  # (G,) positives per group
    negatives: np.ndarray,  # (G,) negatives per group
    fractions: np.ndarray,  # (K,) fractions of the eligible splits
    rng: np.random.Generator,
) -> np.ndarray:
    """Index of the split for each group: stratified greedy fill, largest groups first."""
    remaining = np.stack(
        [
            _rounded_targets(int(positives.sum()), fractions),
            _rounded_targets(int(negatives.sum()), fractions),
        ]
    ).astype(np.float64)  # (2, K) unmet demand per label
    scale = np.maximum(remaining, 1.0)
    eligible = fractions > 0
    sizes = positives + negatives
    order = rng.permutation(len(sizes))
    order = order[np.argsort(-sizes[order], kind="stable")]  # largest first, ties shuffled
    out = np.empty(len(sizes), dtype=np.int64)
    for g in order:
        counts = np.array([positives[g], negatives[g]], dtype=np.float64)  # (2,)
        score = (counts[:, None] * remaining / scale).sum(axis=0)  # (K,)
        score[~eligible] = -np.inf
        best = np.flatnonzero(score >= score.max() - 1e-12)
        choice = int(best[0] if len(best) == 1 else rng.choice(best))
        out[g] = choice
        remaining[:, choice] -= counts
    return out


def assign_splits(
    frame: pd.DataFrame,
    fractions: Mapping[Split, float],
    *,
    seed: int = 0,
    external_in_train_dev: bool = True,
) -> pd.Series:
    """A `Split` value per row of `frame` (`label`, `source`, `group_id` columns)."""
    fractions = check_fractions(fractions)
    rng = np.random.default_rng(seed)
    positive = (frame["label"] == Label.OFFENSIVE.value).to_numpy()
    external = (frame["source"] != PRIMARY_SOURCE).to_numpy()
    group_codes, _ = pd.factorize(frame["group_id"], sort=True)
    per_group = pd.DataFrame({"g": group_codes, "pos": positive, "ext": external})
    stats = per_group.groupby("g").agg(pos=("pos", "sum"), n=("pos", "size"), ext=("ext", "any"))
    group_split = np.empty(len(stats), dtype=object)
    full = np.array([fractions[s] for s in SPLITS])
    training_only = np.array(
        [fractions[s] if s in TRAINING_SPLITS else 0.0 for s in SPLITS], dtype=np.float64
    )
    if not external_in_train_dev:
        training_only[SPLITS.index(Split.TRAIN_DEV)] = 0.0
    for is_external, split_fractions in ((False, full), (True, training_only)):
        mask = (stats["ext"] == is_external).to_numpy()
        pos = stats["pos"].to_numpy()[mask]
        neg = stats["n"].to_numpy()[mask] - pos
        chosen = _assign_groups(pos, neg, split_fractions, rng)
        group_split[mask] = [SPLITS[k].value for k in chosen]
    return pd.Series(group_split[group_codes], index=frame.index, name="split", dtype=str)


def ensure_groups(frame: pd.DataFrame, *, max_distance: int = NEAR_DUPLICATE_DISTANCE) -> None:
    """Add `group_id` from `sha256`/`phash` when the input has none (raises if it cannot)."""
    if "group_id" in frame.columns:
        return
    missing = [c for c in ("sha256", "phash") if c not in frame.columns]
    if missing:
        raise ValueError(
            f"cannot group duplicates without {missing}: run `photosieve ingest` on the data first"
        )
    groups = duplicate_groups(
        frame["sha256"].tolist(), frame["phash"].tolist(), max_distance=max_distance
    )
    frame["group_id"] = groups.group_id


def summarise(manifest: pd.DataFrame, *, target_recall: float, confidence: float) -> pd.DataFrame:
    """Per split: photos, positives, positive share, photos per source, certifiable recall."""
    needed = positives_needed(target_recall, confidence)
    rows = []
    for split in SPLITS:
        part = manifest[manifest["split"] == split.value]
        n_pos = int((part["label"] == Label.OFFENSIVE.value).sum())
        rows.append(
            {
                "split": split.value,
                "photos": len(part),
                "positives": n_pos,
                "positive_share": n_pos / len(part) if len(part) else 0.0,
                "sources": dict(sorted(part["source"].value_counts().items())),
                "certifiable_recall": certifiable_recall(n_pos, confidence),
                "shortfall": max(0, needed - n_pos) if split in CERTIFYING_SPLITS else 0,
            }
        )
    return pd.DataFrame(rows)


def split_manifest(
    frame: pd.DataFrame,
    *,
    fractions: Mapping[Split, float] | None = None,
    seed: int = 0,
    target_recall: float = CERTIFY.target_recall,
    confidence: float = CERTIFY.confidence,
    external_in_train_dev: bool = True,
) -> SplitResult:
    """Assign every photo a split; fractions default to `plan_by_workload` for the target."""
    for column in ("path", "label", "source", "sha256"):
        if column not in frame.columns:
            raise ValueError(f"input has no {column!r} column: run `photosieve ingest` first")
    manifest = frame.copy()
    ensure_groups(manifest)
    needed = positives_needed(target_recall, confidence)
    choice: CalibrationOption | None = None
    curve: list[CalibrationOption] = []
    if fractions is None:
        primary = manifest["source"] == PRIMARY_SOURCE
        n_pos = int((manifest.loc[primary, "label"] == Label.OFFENSIVE.value).sum())
        fractions, choice, curve = plan_by_workload(
            n_pos, target_recall=target_recall, confidence=confidence
        )
    fractions = check_fractions(fractions)
    manifest["split"] = assign_splits(
        manifest, fractions, seed=seed, external_in_train_dev=external_in_train_dev
    )
    return SplitResult(
        manifest=manifest,
        summary=summarise(manifest, target_recall=target_recall, confidence=confidence),
        fractions=fractions,
        seed=seed,
        target_recall=target_recall,
        confidence=confidence,
        positives_needed=needed,
        fingerprint=data_fingerprint(manifest),
        calibration_choice=choice,
        calibration_curve=curve,
    )
