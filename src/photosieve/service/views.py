"""Store rows → API schemas (shared by the upload and review routes)."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from photosieve.service.schemas import (
    DecisionPublic,
    HashMatchPublic,
    HistoryEntry,
    ReviewItemPublic,
    UploadCreated,
    UploadPublic,
)
from photosieve.store.models import ReviewDecision, ReviewItem, Upload
from photosieve.store.queue import HistoryRow


def image_url(upload_id: str) -> str:
    return f"/v1/uploads/{upload_id}/image"


def upload_public(upload: Upload) -> UploadPublic:
    return UploadPublic.model_validate(_upload_fields(upload))


def upload_created(upload: Upload, queued_as: str | None) -> UploadCreated:
    return UploadCreated.model_validate({**_upload_fields(upload), "queued_as": queued_as})


def _upload_fields(upload: Upload) -> dict[str, object]:
    match = None
    if upload.match_distance is not None:
        match = HashMatchPublic(
            upload_id=upload.matched_upload_id,
            distance=upload.match_distance,
            hash=_match_hash(upload) or "phash",
        )
    return {
        "id": upload.id,
        "user_id": upload.user_id,
        "decision": upload.status,
        "reason": upload.reason,
        "final": upload.final,
        "score": upload.score,
        "model_version": upload.model_version,
        "hash_match": match,
        "appealed": upload.appealed_at is not None,
        "appeal_reason": upload.appeal_reason,
        "created_at": upload.created_at,
        "updated_at": upload.updated_at,
    }


_KIND_TEXT = {
    "model_band": "score in the review band",
    "appeal": "the user appealed a removal",
    "audit": "random audit of an auto-approved photo",
    "hash_match": "near-match of a removed photo no person confirmed",
}


def _match_hash(upload: Upload) -> Literal["pdq", "phash"] | None:
    """Which hash the upload's match distance is of (matches before PDQ: the pHash)."""
    if upload.match_distance is None:
        return None
    return "pdq" if upload.match_hash == "pdq" else "phash"


def item_public(item: ReviewItem, upload: Upload) -> ReviewItemPublic:
    detail = _KIND_TEXT.get(item.kind, item.kind)
    if item.kind == "appeal" and upload.reason == "hash_match":
        detail += " (removed as a hash match)"
    return ReviewItemPublic(
        id=item.id,
        upload_id=upload.id,
        kind=item.kind,  # type: ignore[arg-type]
        status=item.status,
        score=upload.score,
        model_decision=upload.model_decision,
        model_version=upload.model_version,
        upload_status=upload.status,  # type: ignore[arg-type]
        reason_detail=detail,
        appeal_reason=upload.appeal_reason if item.kind == "appeal" else None,
        match_distance=upload.match_distance,
        match_hash=_match_hash(upload),
        image_url=image_url(upload.id),
        created_at=item.created_at,
        uploaded_at=upload.created_at,
        claim_expires_at=item.claim_expires_at,
    )


def decision_public(
    decision: ReviewDecision,
    reviewer: str,
    upload_status: str,
    undo_window_seconds: int,
    queue_depth: int | None = None,
) -> DecisionPublic:
    return DecisionPublic(
        id=decision.id,
        decision_id=decision.id,
        item_id=decision.item_id,
        upload_id=decision.upload_id,
        label=decision.label,  # type: ignore[arg-type]
        reviewer=reviewer,
        decided_at=decision.decided_at,
        undone=decision.undone,
        undo_until=decision.decided_at + dt.timedelta(seconds=undo_window_seconds),
        upload_status=upload_status,  # type: ignore[arg-type]
        queue_depth=queue_depth,
    )


def history_entry(row: HistoryRow) -> HistoryEntry:
    return HistoryEntry(
        decision_id=row.decision.id,
        item_id=row.item.id,
        upload_id=row.upload.id,
        kind=row.item.kind,
        label=row.decision.label,  # type: ignore[arg-type]
        reviewer=row.reviewer,
        decided_at=row.decision.decided_at,
        undone=row.decision.undone,
        score=row.upload.score,
        image_url=image_url(row.upload.id),
    )
