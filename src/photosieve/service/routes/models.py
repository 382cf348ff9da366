"""Admin routes of the model registry (`/v1/admin/models…`): list, shadow, gated promote (with an
audited override), rollback. Admin session and CSRF token required, like every admin route.

Promote runs the gate in the request (it scores the candidate's held-out calibration split with
both models; embeddings come from the workdir's cache that `retrain` filled). Every worker
switches by itself within `model_check_seconds` (`service.models`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, status

from photosieve.config import CertifyConfig
from photosieve.feedback import promote as promotion
from photosieve.service.deps import Admin, DbSession, SettingsDep
from photosieve.service.schemas import (
    ErrorResponse,
    GateCheckPublic,
    ModelEventPublic,
    ModelList,
    ModelVersionPublic,
    PromoteRequest,
    PromotionPublic,
    RollbackRequest,
)
from photosieve.store import registry
from photosieve.store.models import ModelVersion
from photosieve.store.registry import RegistryError

router = APIRouter(prefix="/v1/admin/models", tags=["admin"])
Version = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (401, 403, 404, 409, 422)
}


def _error(exc: RegistryError) -> HTTPException:
    code = {
        "not_found": status.HTTP_404_NOT_FOUND,
        "reason_required": 422,
    }.get(exc.reason, status.HTTP_409_CONFLICT)
    return HTTPException(code, detail={"reason": exc.reason, "message": exc.message})


def _public(row: ModelVersion) -> ModelVersionPublic:
    return ModelVersionPublic.model_validate(row, from_attributes=True)


@router.get("", response_model=ModelList, responses=_ERRORS)
def list_models(admin: Admin, session: DbSession) -> ModelList:
    """Every registered version (newest first), the live and shadow ones, the audit log."""
    live, shadow = registry.active_versions(session)
    return ModelList(
        live=live,
        shadow=shadow,
        versions=[_public(row) for row in registry.list_versions(session)],
        events=[
            ModelEventPublic.model_validate(e, from_attributes=True)
            for e in registry.events(session)
        ],
    )


@router.post("/{version}/shadow", response_model=ModelVersionPublic, responses=_ERRORS)
def shadow(version: Version, admin: Admin, session: DbSession) -> ModelVersionPublic:
    """Score every upload with `version` too (recorded, never acted on)."""
    try:
        return _public(promotion.start_shadow(session, version, actor=admin.username))
    except RegistryError as exc:
        raise _error(exc) from exc


@router.post("/{version}/promote", response_model=PromotionPublic, responses=_ERRORS)
def promote(
    version: Version,
    body: PromoteRequest,
    admin: Admin,
    session: DbSession,
    settings: SettingsDep,
) -> PromotionPublic:
    """Gate `version` against the live model and make it live if it passes (or `override`
    with a `reason`, written to the audit log). A refusal answers 200 with `promoted: false`."""
    try:
        done = promotion.promote(
            session,
            version,
            actor=admin.username,
            override=body.override,
            reason=body.reason,
            certify=CertifyConfig(target_recall=body.target_recall, confidence=body.confidence),
            tolerance=body.tolerance,
            legacy_audit_rate=settings.audit_rate,
            workdir=settings.workdir,
        )
    except RegistryError as exc:
        raise _error(exc) from exc
    result = done.result
    return PromotionPublic(
        version=version,
        promoted=done.promoted,
        override=done.override,
        passed=result.passed,
        reasons=result.reasons,
        messages=result.messages,
        checks=[GateCheckPublic.model_validate(c, from_attributes=True) for c in result.checks],
    )


@router.post("/rollback", response_model=ModelVersionPublic, responses=_ERRORS)
def rollback(body: RollbackRequest, admin: Admin, session: DbSession) -> ModelVersionPublic:
    """Make an earlier live version live again (default: the one live before the current)."""
    try:
        return _public(promotion.rollback(session, body.version, actor=admin.username))
    except RegistryError as exc:
        raise _error(exc) from exc
