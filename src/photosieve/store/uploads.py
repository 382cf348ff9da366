"""Repository of uploads: insert a scored upload, read it (per client), change its status."""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from photosieve.store.models import KnownBadHash, ReviewItem, ShadowScore, Upload, utcnow

_ID_CHARS = frozenset(string.ascii_letters + string.digits + "-_")


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
    client_id: int | None = None
    idempotency_key: str | None = None
    request_fingerprint: str | None = None
    pdq: str | None = None
    pdq_quality: int | None = None
    matched_upload_id: str | None = None
    match_distance: int | None = None
    match_hash: str | None = None
    matched_entry_id: int | None = None
    audit_probability: float | None = None


def insert(session: Session, new: NewUpload) -> Upload:
    """Add an upload row (flushed, not committed)."""
    now = utcnow()
    upload = Upload(
        id=new_upload_id(),
        user_id=new.user_id,
        api_key_id=new.api_key_id,
        client_id=new.client_id,
        idempotency_key=new.idempotency_key,
        request_fingerprint=new.request_fingerprint,
        audit_probability=new.audit_probability,
        sha256=new.sha256,
        phash=new.phash,
        pdq=new.pdq,
        pdq_quality=new.pdq_quality,
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
        match_hash=new.match_hash,
        matched_entry_id=new.matched_entry_id,
        created_at=now,
        updated_at=now,
    )
    session.add(upload)
    session.flush()
    return upload


def get(session: Session, upload_id: str, *, for_update: bool = False) -> Upload | None:
    """The upload with this id, or None.

    Ids that cannot be real (too long, characters outside the URL-safe alphabet) are None, not
    database errors.
    """
    if not upload_id or len(upload_id) > 32 or not set(upload_id) <= _ID_CHARS:
        return None
    return session.get(Upload, upload_id, with_for_update=for_update)


def get_for_client(
    session: Session, upload_id: str, client_id: int | None, *, for_update: bool = False
) -> Upload | None:
    """The upload if it belongs to `client_id`; another client's upload is None, exactly like a
    missing one, so upload ids reveal nothing across tenants."""
    upload = get(session, upload_id, for_update=for_update)
    if upload is None or client_id is None or upload.client_id != client_id:
        return None
    return upload


def find_by_idempotency_key(session: Session, client_id: int, key: str) -> Upload | None:
    """The client's upload made with this Idempotency-Key, if any."""
    return session.scalar(
        select(Upload).where(Upload.client_id == client_id, Upload.idempotency_key == key)
    )


def exists_with_sha256(session: Session, sha256: str) -> bool:
    """Whether any upload (of any client) has these exact bytes."""
    return session.scalar(select(Upload.id).where(Upload.sha256 == sha256)) is not None


def set_status(session: Session, upload: Upload, status: str, reason: str, *, final: bool) -> None:
    """Change an upload's status (a person's decision makes it final)."""
    upload.status = status
    upload.reason = reason
    upload.final = final
    upload.updated_at = utcnow()
    session.flush()


def delete_with_dependents(session: Session, upload_id: str) -> None:
    """Delete an upload with its review items and the bank entries it is the source of; no
    commit. Only for an upload nobody decided on (its photo file could not be published)."""
    session.execute(delete(ReviewItem).where(ReviewItem.upload_id == upload_id))
    session.execute(delete(KnownBadHash).where(KnownBadHash.source_upload_id == upload_id))
    session.execute(delete(ShadowScore).where(ShadowScore.upload_id == upload_id))
    session.execute(delete(Upload).where(Upload.id == upload_id))
