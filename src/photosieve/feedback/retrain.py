"""Retrain: reviewers' labels + the earlier training data → split → train → calibrate → evaluate
→ a registered **candidate** (never live by itself; see `feedback.promote`).

`retrain(session, images, workdir, cfg)`:

1. exports every standing human decision (`feedback.export`) and ingests it (hashes, duplicate
   groups); only audits (uniform random draws) may become calibration or test photos, the
   photos the model chose for review are training data (`feedback_photos`);
2. merges it with the earlier data — the split manifest the live model was trained on, or
   `base_manifest` — one row per photo (a reviewer's label wins over an older one);
3. splits the merged photos afresh (`data.split`, stratified, duplicate groups kept together),
   writes the manifest immutably to `<workdir>/models/data/<fingerprint>.csv`;
4. trains (`pipeline.train_bundle`; the backbones are the live model's, `live_recipe`, unless
   the config names others), calibrates on the held-out calibration split
   (`pipeline.calibrate_bundle`, raises `InsufficientPositivesError` when it cannot certify)
   and keeps the per-split metrics (the test split is the evaluation);
5. stores the bundle under `<workdir>/models/<version>/` and registers it as a candidate whose
   parent is the live version, with the data fingerprint and the evidence (certificate,
   metrics, what was exported).
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy.orm import Session

from photosieve.bundle import ModelBundle
from photosieve.config import CERTIFY, CertifyConfig, TrainConfig, Workdir
from photosieve.data.ingest import ingest
from photosieve.data.manifest import read_manifest, write_manifest
from photosieve.data.split import split_manifest
from photosieve.feedback.export import ExportSummary, export_labels
from photosieve.pipeline import calibrate_bundle, train_bundle
from photosieve.records import MANIFEST_COLUMNS, Split
from photosieve.store import registry
from photosieve.store.db import begin_write
from photosieve.store.models import ItemKind, ModelStatus
from photosieve.store.photos import PhotoStore
from photosieve.vision.embed import Embedder, embed_files

MERGE_COLUMNS = ("path", "label", "source", "sha256", "phash")
SELECTED_SOURCE = "external:selected"  # reviewed because the model or a user picked it


@dataclass(frozen=True)
class RetrainConfig:
    """How a retrain splits, trains and certifies (defaults: the product's)."""

    train: TrainConfig = field(default_factory=TrainConfig)
    certify: CertifyConfig = CERTIFY
    fractions: Mapping[Split, float] | None = None  # None: the workload planner decides
    seed: int = 0


@dataclass(frozen=True)
class RetrainOutcome:
    """The registered candidate and what went into it."""

    version: str
    parent_version: str | None
    bundle_path: Path
    manifest_path: Path
    photos: int
    feedback: ExportSummary
    evidence: dict[str, Any]


def base_manifest_of(session: Session) -> Path | None:
    """The split manifest the live model was trained on, when the registry knows one."""
    live = registry.with_status(session, ModelStatus.LIVE)
    if live is None:
        return None
    if live.manifest_path:
        return Path(live.manifest_path)
    named = ModelBundle.load(live.bundle_path).train_config.get("manifest")
    return Path(named) if named else None


# What a retrain keeps of the live model's training config: its backbones, its gate rule and
# its fine-tuning (a tuned model is tuned again, on the new labels).
RECIPE_KEYS = (
    "backbone", "refine_backbone", "refine_share", "refine_stop", "finetune_epochs",
    "finetune_head", "finetune_seeds",
)  # fmt: skip


def live_recipe(session: Session) -> dict[str, Any]:
    """The live model's backbones (and a cascade's gate rule) as `TrainConfig` fields: a
    retrain rebuilds the model that is served, a cascade as a cascade; {} with no live model."""
    live = registry.with_status(session, ModelStatus.LIVE)
    if live is None:
        return {}
    trained = ModelBundle.load(live.bundle_path).train_config
    return {key: trained[key] for key in RECIPE_KEYS if key in trained}


def merged_photos(feedback: pd.DataFrame | None, base: pd.DataFrame | None) -> pd.DataFrame:
    """One row per photo (by SHA-256) of the earlier data and the reviewers' labels; a
    reviewer's label wins. Groups and splits are dropped: the split is planned afresh."""
    parts = [frame[list(MERGE_COLUMNS)] for frame in (base, feedback) if frame is not None]
    merged = pd.concat(parts, ignore_index=True)
    return merged.drop_duplicates("sha256", keep="last").reset_index(drop=True)


def feedback_photos(labels: Path) -> pd.DataFrame | None:
    """The exported labels, ingested. Only audits are a uniform random sample of production:
    photos a person saw because the model (or a user) chose them become `external:selected`,
    which the splitter keeps in the training splits, never in calibration or test."""
    result = ingest(labels)
    if not len(result.accepted):
        return None
    photos = result.accepted.copy()
    photos.loc[photos["review_kind"] != ItemKind.AUDIT.value, "source"] = SELECTED_SOURCE
    return photos


def _metrics_summary(bundle: ModelBundle) -> dict[str, Any]:
    keep = ("n", "positives", "average_precision", "review_rate_at_recall")
    splits = bundle.metrics.get("splits", {})
    return {name: {k: row.get(k) for k in keep} for name, row in splits.items()}


def _store_bundle(bundle: ModelBundle, models: Path) -> Path:
    """Save `bundle` as `<models>/<version>/` (content-addressed, never overwritten)."""
    staging = models / f".new-{secrets.token_hex(6)}"
    bundle.save(staging)
    target = models / bundle.version
    if target.exists():
        shutil.rmtree(staging)
    else:
        staging.rename(target)
    return target


def retrain(
    session: Session,
    images: PhotoStore,
    workdir: Workdir,
    cfg: RetrainConfig | None = None,
    *,
    actor: str,
    base_manifest: Path | None = None,
    embedder: Embedder | None = None,
    progress: bool = False,
    jobs: int = 1,
) -> RetrainOutcome:
    """Build, certify and register a candidate from reviewers' labels + the earlier data (see
    the module docstring); `jobs` processes fit the head ensemble's members side by side.
    Raises ValueError (no data) or `InsufficientPositivesError`."""
    cfg = cfg or RetrainConfig()
    summary = export_labels(session, images, workdir.feedback_labels)
    feedback = feedback_photos(workdir.feedback_labels) if summary.rows else None
    base_path = base_manifest or base_manifest_of(session)
    session.commit()  # end the read transaction; training takes a while
    base = read_manifest(base_path, columns=MERGE_COLUMNS) if base_path is not None else None
    if feedback is None and base is None:
        raise ValueError("nothing to train on: no reviewer decisions and no earlier manifest")
    photos = merged_photos(feedback, base)
    split = split_manifest(
        photos,
        fractions=cfg.fractions,
        seed=cfg.seed,
        target_recall=cfg.certify.target_recall,
        confidence=cfg.certify.confidence,
    )
    manifest_path = write_manifest(
        split.manifest,
        workdir.models / "data" / f"{split.fingerprint[:16]}.csv",
        columns=MANIFEST_COLUMNS,
    )
    root = workdir.root
    # once, into the workdir's cache: calibration below reads it back (a model to fine-tune is
    # embedded by `train_bundle`, after its backbone is tuned)
    X = (
        None
        if cfg.train.finetune_epochs
        else embed_files(
            [Path(p) for p in split.manifest["path"]],
            workdir=root,
            backbone=cfg.train.backbone,
            embedder=embedder,
            progress=progress,
        )
    )
    trained = train_bundle(
        manifest_path, cfg.train, workdir=root, progress=progress, embeddings=X, jobs=jobs
    )
    bundle = calibrate_bundle(
        trained.bundle, manifest_path, cfg.certify, workdir=root, progress=progress
    )
    bundle_path = _store_bundle(bundle, workdir.models)
    assert bundle.policy is not None
    evidence = {
        "calibration": bundle.policy.evidence,
        "metrics": _metrics_summary(bundle),
        "feedback": asdict(summary),
        "base_manifest": str(base_path) if base_path else None,
        "photos": len(split.manifest),
        "warnings": trained.warnings,
    }
    begin_write(session)
    live = registry.with_status(session, ModelStatus.LIVE)
    parent = live.version if live is not None else None
    registry.register(
        session,
        registry.NewModel(
            version=bundle.version,
            bundle_path=str(bundle_path),
            parent_version=parent,
            manifest_path=str(manifest_path),
            data_fingerprint=bundle.data_fingerprint,
            evidence=evidence,
        ),
        actor=actor,
    )
    session.commit()
    return RetrainOutcome(
        version=bundle.version,
        parent_version=parent,
        bundle_path=bundle_path,
        manifest_path=manifest_path,
        photos=len(split.manifest),
        feedback=summary,
        evidence=evidence,
    )
