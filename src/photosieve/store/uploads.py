"""Repository of uploads: insert a scored upload, read it, change its status."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy.orm import Session

from photosieve.store.models import Upload, utcnow


def new_upload_id() -> str:
    """A random, unguessable id (128 bits): photo URLs cannot be enumerated."""
    return secrets.token_urlsafe(16)


@dataclass(frozen=True)
class NewUpload:
    """Everything known about an upload when it is recorded."""

    user_id: str
    sha256: str
    phash: str
    image_format: str
    width: int
    height: int
    size_bytes: int
    score: float
    model_version: str
    model_decision: str
    status: str
    reason: str
    api_key_id: int | None = None
    matched_upload_id: str | None = None
    match_distance: int | None = None


def insert(session: Session, new: NewUpload) -> Upload:
    """Add an upload row (flushed, not committed)."""
    now = utcnow()
    upload = Upload(
        id=new_upload_id(),
        user_id=new.user_id,
        api_key_id=new.api_key_id,
        sha256=new.sha256,
        phash=new.phash,
        image_format=new.image_format,
        width=new.width,
        height=new.height,
        size_bytes=new.size_bytes,
        score=new.score,
        model_version=new.model_version,
        model_decision=new.model_decision,
        status=new.status,
        reason=new.reason,
        final=False,
        matched_upload_id=new.matched_upload_id,
        match_distance=new.match_distance,
        created_at=now,
        updated_at=now,
    )
    session.add(upload)
    session.flush()
    return upload


def get(session: Session, upload_id: str, *, for_update: bool = False) -> Upload | None:
    """The upload with this id, or None (ids longer than any real one are None, not errors)."""
    if not upload_id or len(upload_id) > 32:
        return None
    return session.get(Upload, upload_id, with_for_update=for_update)


def set_status(session: Session, upload: Upload, status: str, reason: str, *, final: bool) -> None:
    """Change an upload's status (a person's decision makes it final)."""
    upload.status = status
    upload.reason = reason
    upload.final = final
    upload.updated_at = utcnow()
    session.flush()
