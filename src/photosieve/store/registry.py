"""Repository of the model registry: registered versions, their status, shadow scores and the
model audit log (`model_versions`, `shadow_scores`, `model_events`).

Status moves: candidate → shadow → live → retired (a rollback makes a retired, once-live version
live again). At most one version is live and at most one is in shadow; the database enforces the
first with a partial unique index. Every move writes a `model_events` row naming who did it,
whether the gate was overridden and why. Functions flush but never commit: the caller owns the
transaction (and opens it with `db.begin_write`).
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from photosieve.store.models import (
    ModelEvent,
    ModelStatus,
    ModelVersion,
    ShadowScore,
    Upload,
    utcnow,
)


class EventKind(enum.StrEnum):
    """What a `model_events` row records."""

    REGISTERED = "registered"  # a candidate (or the first live model) entered the registry
    SHADOW = "shadow"  # started scoring uploads in shadow
    PROMOTED = "promoted"  # made live by the gate (or an admin override)
    ROLLED_BACK = "rolled_back"  # made live again by a rollback


class RegistryError(ValueError):
    """A registry move that is not allowed; `reason` is a stable code for the API."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class NewModel:
    """What `register` stores about a bundle."""

    version: str
    bundle_path: str
    parent_version: str | None = None
    manifest_path: str | None = None
    data_fingerprint: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)


def get(session: Session, version: str, *, for_update: bool = False) -> ModelVersion | None:
    """The registered `version`, or None."""
    query = select(ModelVersion).where(ModelVersion.version == version)
    if for_update:
        query = query.with_for_update()
    return session.scalars(query).one_or_none()


def require(session: Session, version: str, *, for_update: bool = False) -> ModelVersion:
    """The registered `version`; RegistryError `not_found` otherwise."""
    row = get(session, version, for_update=for_update)
    if row is None:
        raise RegistryError("not_found", f"no registered model version {version!r}")
    return row


def list_versions(session: Session) -> list[ModelVersion]:
    """Every registered version, newest first."""
    return list(
        session.scalars(
            select(ModelVersion).order_by(ModelVersion.created_at.desc(), ModelVersion.id.desc())
        )
    )


def with_status(session: Session, status: ModelStatus) -> ModelVersion | None:
    """The version with `status` (live or shadow: at most one each)."""
    return session.scalars(
        select(ModelVersion)
        .where(ModelVersion.status == status.value)
        .order_by(ModelVersion.id.desc())
        .limit(1)
    ).one_or_none()


def active_versions(session: Session) -> tuple[str | None, str | None]:
    """(live version, shadow version): the one cheap read every worker repeats."""
    rows = session.execute(
        select(ModelVersion.version, ModelVersion.status).where(
            ModelVersion.status.in_((ModelStatus.LIVE.value, ModelStatus.SHADOW.value))
        )
    ).all()
    found = {status: version for version, status in rows}
    return found.get(ModelStatus.LIVE.value), found.get(ModelStatus.SHADOW.value)


def evidence_of(row: ModelVersion) -> dict[str, Any]:
    """The row's evidence JSON as a dict."""
    data: dict[str, Any] = json.loads(row.evidence or "{}")
    return data


def register(
    session: Session, new: NewModel, *, actor: str, status: ModelStatus = ModelStatus.CANDIDATE
) -> ModelVersion:
    """Add a version (RegistryError `exists` if it is registered already)."""
    if get(session, new.version) is not None:
        raise RegistryError("exists", f"model version {new.version!r} is registered already")
    now = utcnow()
    row = ModelVersion(
        version=new.version,
        parent_version=new.parent_version,
        bundle_path=new.bundle_path,
        manifest_path=new.manifest_path,
        data_fingerprint=new.data_fingerprint,
        evidence=json.dumps(new.evidence, sort_keys=True, default=str),
        status=status.value,
        created_at=now,
        promoted_at=now if status is ModelStatus.LIVE else None,
        promoted_by=actor if status is ModelStatus.LIVE else None,
        override=False,
    )
    session.add(row)
    session.flush()
    _event(session, EventKind.REGISTERED, new.version, actor, previous=new.parent_version)
    return row


def start_shadow(session: Session, version: str, *, actor: str) -> ModelVersion:
    """Make `version` the shadow model (the previous shadow goes back to candidate)."""
    row = require(session, version, for_update=True)
    if row.status == ModelStatus.LIVE.value:
        raise RegistryError("is_live", f"{version} is the live model; it cannot shadow itself")
    session.execute(
        update(ModelVersion)
        .where(ModelVersion.status == ModelStatus.SHADOW.value, ModelVersion.id != row.id)
        .values(status=ModelStatus.CANDIDATE.value)
        .execution_options(synchronize_session=False)
    )
    row.status = ModelStatus.SHADOW.value
    session.flush()
    _event(session, EventKind.SHADOW, version, actor)
    return row


def make_live(
    session: Session,
    version: str,
    *,
    actor: str,
    kind: EventKind,
    override: bool = False,
    reason: str | None = None,
    evidence: dict[str, Any] | None = None,
) -> ModelVersion:
    """Make `version` live; the live one before it is retired. `evidence` is merged into the
    row's evidence (the gate result). Returns the new live row."""
    row = require(session, version, for_update=True)
    if row.status == ModelStatus.LIVE.value:
        raise RegistryError("already_live", f"{version} is the live model already")
    current = with_status(session, ModelStatus.LIVE)
    previous = current.version if current is not None else None
    if current is not None:
        current.status = ModelStatus.RETIRED.value
        session.flush()  # the partial unique index allows one live row at a time
    row.status = ModelStatus.LIVE.value
    row.promoted_at = utcnow()
    row.promoted_by = actor
    row.override = override
    if evidence:
        row.evidence = json.dumps(evidence_of(row) | evidence, sort_keys=True, default=str)
    session.flush()
    _event(session, kind, version, actor, previous=previous, override=override, reason=reason)
    return row


def was_live(session: Session, version: str) -> bool:
    """Whether `version` was ever live (a rollback target)."""
    return (
        session.scalar(
            select(ModelEvent.id)
            .where(
                ModelEvent.version == version,
                ModelEvent.kind.in_((EventKind.PROMOTED.value, EventKind.ROLLED_BACK.value)),
            )
            .limit(1)
        )
        is not None
        or session.scalar(
            select(ModelVersion.id).where(
                ModelVersion.version == version, ModelVersion.promoted_at.is_not(None)
            )
        )
        is not None
    )


def previous_live(session: Session) -> str | None:
    """The version that was live before the current one (the default rollback target)."""
    current = with_status(session, ModelStatus.LIVE)
    if current is None:
        return None
    return session.scalar(
        select(ModelEvent.previous_version)
        .where(
            ModelEvent.version == current.version,
            ModelEvent.kind.in_((EventKind.PROMOTED.value, EventKind.ROLLED_BACK.value)),
        )
        .order_by(ModelEvent.id.desc())
        .limit(1)
    )


def record_shadow_score(session: Session, upload_id: str, version: str, score: float) -> None:
    """Store the shadow model's score of an upload."""
    session.add(ShadowScore(upload_id=upload_id, version=version, score=score, created_at=utcnow()))
    session.flush()


def shadow_scores(session: Session, version: str) -> dict[str, float]:
    """upload id → score, for every upload `version` scored in shadow."""
    rows = session.execute(
        select(ShadowScore.upload_id, ShadowScore.score).where(ShadowScore.version == version)
    ).all()
    return {upload_id: float(score) for upload_id, score in rows}


def shadow_pairs(
    session: Session, version: str, live_version: str
) -> list[tuple[str, float, float]]:
    """(upload id, live score, shadow score) of every upload `live_version` decided while
    `version` scored it in shadow."""
    rows = session.execute(
        select(ShadowScore.upload_id, Upload.score, ShadowScore.score)
        .join(Upload, Upload.id == ShadowScore.upload_id)
        .where(ShadowScore.version == version, Upload.model_version == live_version)
    ).all()
    return [(upload_id, float(live), float(shadow)) for upload_id, live, shadow in rows]


def events(session: Session, limit: int = 50) -> list[ModelEvent]:
    """The model audit log, newest first."""
    return list(session.scalars(select(ModelEvent).order_by(ModelEvent.id.desc()).limit(limit)))


def _event(
    session: Session,
    kind: EventKind,
    version: str,
    actor: str,
    *,
    previous: str | None = None,
    override: bool = False,
    reason: str | None = None,
) -> None:
    session.add(
        ModelEvent(
            at=utcnow(),
            kind=kind.value,
            version=version,
            previous_version=previous,
            actor=actor[:64],
            override=override,
            reason=reason[:1000] if reason else None,
        )
    )
    session.flush()
