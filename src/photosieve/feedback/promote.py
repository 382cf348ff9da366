"""Registry moves that need models and data: shadow, gate + promote, rollback.

- `start_shadow`: the candidate scores every upload beside the live model (the service reads it
  from the registry; nothing it scores is acted on).
- `check_candidate`: the gate's inputs — the candidate's held-out calibration split scored by
  the candidate and by the live model, and the shadow period's production evidence (uploads the
  live model decided, with the candidate's shadow scores) — and the `policy.gate` verdict.
- `promote`: the gate, then the candidate goes live (the live one retires). A refused candidate
  goes live only with `override=True` and a reason; both the gate result and the override are
  written to the model audit log (`model_events`) and the version's evidence.
- `rollback`: any version that was live before goes live again, no gate (it was live).

Workers switch by themselves: they read the live version from the registry (`service.models`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy.orm import Session

from photosieve.bundle import ModelBundle
from photosieve.config import CERTIFY, CertifyConfig
from photosieve.data.manifest import read_manifest
from photosieve.policy.gate import GateResult, HeldOut, ShadowPeriod, gate
from photosieve.policy.production import ProductionEvidence
from photosieve.scoring import calibration_rows, score_rows
from photosieve.store import evidence, registry
from photosieve.store.db import begin_write
from photosieve.store.models import ModelStatus, ModelVersion
from photosieve.store.registry import EventKind, RegistryError


@dataclass(frozen=True)
class Promotion:
    """What `promote` did: the gate's verdict, and whether the version went live."""

    version: str
    result: GateResult
    promoted: bool
    override: bool


def _threshold(bundle: ModelBundle) -> float:
    """The approve threshold (no policy: approve nothing, every photo goes to a person)."""
    return bundle.policy.approve_below if bundle.policy is not None else 0.0


def held_out_scores(
    candidate: ModelVersion, cand: ModelBundle, live: ModelBundle, *, workdir: Path | None
) -> HeldOut | None:
    """The candidate's calibration split scored by both models (None without a manifest)."""
    if not candidate.manifest_path:
        return None
    frame = read_manifest(candidate.manifest_path, columns=("path", "label", "split", "source"))
    rows = calibration_rows(frame)
    return HeldOut(
        labels=rows["label"].to_numpy(),
        candidate_scores=score_rows(cand, rows, workdir=workdir, progress=False),
        live_scores=score_rows(live, rows, workdir=workdir, progress=False),
    )


def shadow_period(
    session: Session, version: str, live_version: str, *, legacy_audit_rate: float
) -> ShadowPeriod | None:
    """Uploads the live model decided while `version` scored them in shadow (None if none)."""
    pairs = registry.shadow_pairs(session, version, live_version)
    if not pairs:
        return None
    shadow_of = {upload_id: shadow for upload_id, _, shadow in pairs}
    ids, ev = evidence.production_evidence_by_upload(
        session, live_version, legacy_audit_rate=legacy_audit_rate
    )
    keep = np.array([i in shadow_of for i in ids], dtype=bool)
    shadowed = ProductionEvidence(
        ev.scores[keep], ev.inclusion[keep], ev.labelled[keep], ev.offensive[keep]
    )
    return ShadowPeriod(
        evidence=shadowed,
        candidate_evidence_scores=np.array([shadow_of[i] for i in ids if i in shadow_of]),
        live_scores=np.array([live for _, live, _ in pairs]),
        candidate_scores=np.array([shadow for _, _, shadow in pairs]),
    )


def check_candidate(
    session: Session,
    version: str,
    *,
    certify: CertifyConfig = CERTIFY,
    tolerance: float = 0.0,
    legacy_audit_rate: float,
    workdir: Path | None = None,
) -> GateResult:
    """The gate's verdict on `version` against the live model (read-only)."""
    row = registry.require(session, version)
    live_row = registry.with_status(session, ModelStatus.LIVE)
    if live_row is None:
        raise RegistryError("no_live_model", "no live model to compare with; promote needs one")
    if live_row.version == version:
        raise RegistryError("already_live", f"{version} is the live model already")
    cand, live = ModelBundle.load(row.bundle_path), ModelBundle.load(live_row.bundle_path)
    shadow = shadow_period(session, version, live_row.version, legacy_audit_rate=legacy_audit_rate)
    session.commit()  # scoring the held-out photos may take a while: no open transaction
    return gate(
        _threshold(cand),
        _threshold(live),
        held_out=held_out_scores(row, cand, live, workdir=workdir),
        shadow=shadow,
        target_recall=certify.target_recall,
        confidence=certify.confidence,
        prevalence=certify.prevalence,
        tolerance=tolerance,
    )


def promote(
    session: Session,
    version: str,
    *,
    actor: str,
    override: bool = False,
    reason: str | None = None,
    certify: CertifyConfig = CERTIFY,
    tolerance: float = 0.0,
    legacy_audit_rate: float,
    workdir: Path | None = None,
) -> Promotion:
    """Gate `version`, then make it live if it passes (or `override` with a `reason`)."""
    if override and not (reason and reason.strip()):
        raise RegistryError("reason_required", "an override needs a reason (it is audited)")
    result = check_candidate(
        session,
        version,
        certify=certify,
        tolerance=tolerance,
        legacy_audit_rate=legacy_audit_rate,
        workdir=workdir,
    )
    if not result.passed and not override:
        return Promotion(version, result, promoted=False, override=False)
    overridden = override and not result.passed
    begin_write(session)
    registry.make_live(
        session,
        version,
        actor=actor,
        kind=EventKind.PROMOTED,
        override=overridden,
        reason=reason if overridden else (reason or "gate passed"),
        evidence={"gate": result.to_dict()},
    )
    session.commit()
    return Promotion(version, result, promoted=True, override=overridden)


def rollback(session: Session, version: str | None = None, *, actor: str) -> ModelVersion:
    """Make `version` (default: the one live before the current one) live again."""
    begin_write(session)
    target = version or registry.previous_live(session)
    if target is None:
        raise RegistryError("no_previous", "no earlier live version to roll back to")
    registry.require(session, target)
    if not registry.was_live(session, target):
        raise RegistryError(
            "never_live", f"{target} was never live; promote it through the gate instead"
        )
    row = registry.make_live(
        session, target, actor=actor, kind=EventKind.ROLLED_BACK, reason="rollback"
    )
    session.commit()
    return row


def start_shadow(session: Session, version: str, *, actor: str) -> ModelVersion:
    """Make `version` the shadow model."""
    begin_write(session)
    row = registry.start_shadow(session, version, actor=actor)
    session.commit()
    return row
