"""Appeals: a client's user asks for a second look at a removal; who may decide it.

Rules (routes only translate HTTP):

- only the upload's own client may appeal it (another client's upload is "not found");
- a removed upload can be appealed once, with an optional reason from the user, stored and shown
  to the reviewer; repeating the appeal while it is open is harmless; once an appeal was decided
  the upload is final;
- the reviewer whose decision removed the photo (directly, or by confirming the known-bad photo
  it near-matches) is recused: the queue does not hand them the appeal and a decision by them is
  refused (403 `own_removal`). A removal by the model alone may be decided by any reviewer.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from photosieve.store import decisions, queue, uploads
from photosieve.store.db import begin_write
from photosieve.store.models import (
    ItemKind,
    Upload,
    UploadReason,
    UploadStatus,
    User,
    utcnow,
)
from photosieve.store.queue import ConflictError, ForbiddenError, NotFoundError

MAX_REASON_CHARS = 1000


def remover_of(session: Session, upload: Upload) -> int | None:
    """The reviewer whose decision removed this upload, or None for a removal by the model."""
    if upload.reason == UploadReason.REVIEWER.value:
        return decisions.latest_remover(session, upload.id)
    if upload.reason == UploadReason.HASH_MATCH.value and upload.matched_upload_id:
        # The known-bad photo it matched: confirmed by a person (that person removed this one
        # too), or a removal by the model (nobody to recuse).
        return decisions.latest_banker(session, upload.matched_upload_id)
    return None


def appeal(
    session: Session, upload_id: str, *, client_id: int | None, reason: str | None = None
) -> Upload:
    """Queue the client's removed upload as an appeal (repeating an open one is harmless); commits.

    `reason` must already be checked (length, characters) at the edge.
    """
    begin_write(session)
    upload = uploads.get_for_client(session, upload_id, client_id, for_update=True)
    if upload is None:
        raise NotFoundError("not_found", f"no upload {upload_id}")
    if upload.status != UploadStatus.REMOVED.value:
        raise ConflictError("not_removed", f"upload is {upload.status}; only removals")
    open_item = queue.open_item_for(session, upload.id)
    if upload.appealed_at is not None:
        if open_item is None:
            raise ConflictError("final", "the appeal was decided; this upload is final")
        if upload.appeal_reason is None and reason:
            upload.appeal_reason = reason
        session.commit()
        return upload
    upload.appealed_at = utcnow()
    upload.appeal_reason = reason or None
    item = open_item or queue.enqueue(session, upload.id, ItemKind.APPEAL)
    item.kind = ItemKind.APPEAL.value
    item.recused_reviewer_id = remover_of(session, upload)
    session.commit()
    return upload


def withdraw_if_moot(session: Session, upload: Upload, *, keep_item_id: int) -> None:
    """After an undo left the upload not removed, drop its open appeal (nothing to appeal any
    more; the user may appeal again if it is removed again). No commit."""
    if upload.status == UploadStatus.REMOVED.value or upload.appealed_at is None:
        return
    queue.drop_open_appeals(session, upload.id, keep_item_id=keep_item_id)
    upload.appealed_at = None
    upload.appeal_reason = None
    session.flush()


def check_not_recused(session: Session, item_id: int, reviewer: User) -> None:
    """Refuse (403 `own_removal`) a reviewer deciding the appeal of their own removal."""
    item = queue.get_item(session, item_id)
    recused = item is not None and item.kind == ItemKind.APPEAL.value
    if recused and item is not None and item.recused_reviewer_id == reviewer.id:
        raise ForbiddenError(
            "own_removal", "you removed this photo; another reviewer must decide its appeal"
        )
