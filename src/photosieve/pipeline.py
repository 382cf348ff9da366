"""The pipeline's stages as plain functions over files and configs; the CLI only wraps them.

`train_bundle(split_manifest, TrainConfig)` → a `ModelBundle` (head, backbone id and
preprocessing, the exact config, the data fingerprint, metrics per split);
`calibrate_bundle(bundle, split_manifest, CertifyConfig)` → the bundle with a certified policy.
Both return new objects; callers save them. Driving the pipeline from Python (retraining, benches,
tests) goes through these, not through the commands.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from photosieve.bundle import ModelBundle, Refiner, cascade_scores, check_one_decode
from photosieve.config import CERTIFY, CertifyConfig
from photosieve.data.manifest import read_manifest
from photosieve.data.split import data_fingerprint
from photosieve.learn.ensemble import EnsembleHead
from photosieve.learn.head import MLPHead
from photosieve.learn.metrics import as_binary_labels
from photosieve.learn.train import (
    EpochCallback,
    TrainConfig,
    cascade_gate,
    embed_manifest,
    fit_head,
    mirrored_train_rows,
    read_split_manifest,
    split_metrics,
    tune_backbone,
)
from photosieve.policy.certify import certify_policy
from photosieve.records import sha256_file
from photosieve.scoring import CALIBRATION_SOURCE, calibration_rows, score_rows
from photosieve.vision.backbone import backbone_config
from photosieve.vision.tuned import register_tuned


@dataclass
class TrainOutcome:
    """A trained bundle plus what the CLI reports beside it."""

    bundle: ModelBundle
    warnings: list[str] = field(default_factory=list)


def train_bundle(
    split_manifest: str | Path,
    cfg: TrainConfig | None = None,
    *,
    workdir: Path | None = None,
    progress: bool = True,
    on_epoch: EpochCallback | None = None,
    embeddings: np.ndarray | None = None,
    jobs: int = 1,
) -> TrainOutcome:
    """Train a head on the manifest's `train` rows; return a bundle with metrics per split.

    `embeddings` (aligned with the manifest's rows) skips the embedding step (tests, benches).
    `jobs` > 1 fits the ensemble's heads in that many processes side by side (same heads).
    With `cfg.train_mirror` the head also trains on the `train` rows' photos mirrored
    (`learn.train.mirrored_train_rows`; a cascade's second head does not).
    With `cfg.refine_backbone` the bundle is a two-stage cascade (`bundle.Refiner`): a second
    head on [first embedding, refine backbone's embedding] fitted on the same rows, the gate
    chosen on validation (`learn.train.cascade_gate`); its metrics are the composite score's.
    With `cfg.finetune_epochs` the backbone is tuned first (`learn.train.tune_backbone`) and the
    head is one fitted afresh on the tuned embeddings (`cfg.finetune_head="refit"`), the classifier
    tuned with the backbone ("tuned"), or the mean of the two heads' logits ("both").
    """
    cfg = cfg or TrainConfig()
    _check_cascade(cfg)
    frame = read_split_manifest(split_manifest)
    name, weights = cfg.backbone, None
    if cfg.finetune_epochs and embeddings is not None:
        raise ValueError("precomputed embeddings cannot come from a backbone yet to be tuned")
    tuned = None
    if cfg.finetune_epochs:
        tuned = tune_backbone(frame, cfg, workdir=workdir, progress=progress)
        weights = tuned.weights
        name = register_tuned(weights)
    X = (
        embeddings
        if embeddings is not None
        else embed_manifest(frame, workdir=workdir, backbone=name, progress=progress)
    )
    head: MLPHead | EnsembleHead
    messages: list[str]
    if tuned is not None and cfg.finetune_head == "tuned":
        head, messages = tuned.head, []  # trained with the backbone: nothing is fitted again
    else:
        extra = (
            mirrored_train_rows(frame, workdir=workdir, backbone=name, progress=progress)
            if cfg.train_mirror
            else None
        )
        head, messages = fit_head(X, frame, cfg, on_epoch=on_epoch, jobs=jobs, extra=extra)
    if tuned is not None and cfg.finetune_head == "both":  # each weighs half of the mean logit
        head = EnsembleHead.from_members([head, tuned.head])
    backbone = backbone_config(name)
    scores = head.score(X)
    refiner = None
    if cfg.refine_backbone is not None:
        refiner, scores, first_metrics, more = _fit_refiner(
            X, scores, frame, cfg, workdir=workdir, progress=progress, on_epoch=on_epoch, jobs=jobs
        )
        messages = sorted(set(messages) | set(more))
    metrics = split_metrics(scores, frame, target_recall=cfg.target_recall)
    metrics["gradient_health"] = head.gradient_health_
    metrics["best_epoch"] = head.best_epoch_
    if refiner is not None:
        metrics["first_stage"] = first_metrics
    bundle = ModelBundle(
        head=head,
        backbone_id=backbone.id,
        preprocess=backbone.preprocess,
        train_config=cfg.to_dict() | {"manifest": str(Path(split_manifest).resolve())},
        data_fingerprint=data_fingerprint(frame),
        metrics=metrics,
        refiner=refiner,
        backbone_weights=weights,
    )
    return TrainOutcome(bundle=bundle, warnings=messages)


def _check_cascade(cfg: TrainConfig) -> None:
    """Refuse a cascade whose stages decode photos for different sizes (before any work)."""
    if cfg.refine_backbone is None:
        return
    fix = (  # a tuned first stage is Lite0 at 224 px; the frozen one has a 384-px decode variant
        "a tuned first stage decodes at 224 px: pick a second backbone that does, such as "
        "efficientnet_lite2_224_avgmax"
        if cfg.finetune_epochs
        else f"with {cfg.refine_backbone}, train the first stage on efficientnet_lite0_avgmax_d384"
    )
    check_one_decode(
        backbone_config(cfg.backbone).preprocess,
        backbone_config(cfg.refine_backbone).preprocess,
        f" ({cfg.backbone}, {cfg.refine_backbone}; {fix})",
    )


def _fit_refiner(
    X: np.ndarray,
    first: np.ndarray,
    frame: pd.DataFrame,
    cfg: TrainConfig,
    *,
    workdir: Path | None,
    progress: bool,
    on_epoch: EpochCallback | None,
    jobs: int,
) -> tuple[Refiner, np.ndarray, dict[str, Any], list[str]]:
    """A cascade's second stage: (refiner, composite scores, first-stage metrics, warnings)."""
    assert cfg.refine_backbone is not None
    second = backbone_config(cfg.refine_backbone)
    X2 = embed_manifest(frame, workdir=workdir, backbone=cfg.refine_backbone, progress=progress)
    both = np.concatenate([X, X2], axis=1)
    head2, messages = fit_head(both, frame, cfg, on_epoch=on_epoch, jobs=jobs)
    gate, rule = cascade_gate(first, frame, share=cfg.refine_share, stop=cfg.refine_stop)
    rule["second_head_best_epoch"] = head2.best_epoch_
    refiner = Refiner(
        head=head2, backbone_id=second.id, preprocess=second.preprocess, gate=gate, gate_rule=rule
    )
    scores = cascade_scores(first, refiner, X, lambda rows: X2[rows])
    first_metrics = split_metrics(first, frame, target_recall=cfg.target_recall)
    return refiner, scores, first_metrics, messages


def calibrate_bundle(
    bundle: ModelBundle | str | Path,
    split_manifest: str | Path,
    cfg: CertifyConfig = CERTIFY,
    *,
    remove_band: bool = True,
    workdir: Path | None = None,
    progress: bool = True,
) -> ModelBundle:
    """`bundle` with a policy certified on `split_manifest`'s calibration sample at `cfg`.

    Only primary-source rows of the calibration split are used (`scoring.calibration_rows`).
    Raises `InsufficientPositivesError` when they cannot certify the target with zero misses.
    """
    model = bundle if isinstance(bundle, ModelBundle) else ModelBundle.load(bundle)
    manifest = Path(split_manifest)
    rows = calibration_rows(read_manifest(manifest, columns=("path", "label")))
    scores = score_rows(model, rows, workdir=workdir, progress=progress)
    policy = certify_policy(
        scores,
        rows["label"].to_numpy(),
        target_recall=cfg.target_recall,
        confidence=cfg.confidence,
        target_precision=cfg.target_precision if remove_band else None,
        prevalence=cfg.prevalence,
        source=f"{manifest.resolve()} (sha256 {sha256_file(manifest)[:16]}): "
        f"{CALIBRATION_SOURCE} ({len(rows)} photos)",
    )
    if model.refiner is not None:  # what the gate did on the calibration sample
        policy = dataclasses.replace(
            policy, evidence=policy.evidence | {"cascade": _gate_evidence(model, rows, scores)}
        )
    return model.with_policy(policy)


def _gate_evidence(model: ModelBundle, rows: pd.DataFrame, scores: np.ndarray) -> dict[str, Any]:
    """How many calibration positives the cascade's gate stopped (each a miss the certificate
    counted: more than it allows, and nothing is approved) and how many negatives it passed."""
    assert model.refiner is not None
    y = as_binary_labels(rows["label"].to_numpy())
    stopped = scores == 0.0  # the composite score of a photo the gate stopped
    return {
        "gate": model.refiner.gate,
        "positives_stopped": int((stopped & (y == 1)).sum()),
        "negatives_passed": float((~stopped[y == 0]).mean()) if (y == 0).any() else None,
    }
