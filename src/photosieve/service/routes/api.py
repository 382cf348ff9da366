"""Upload-client routes (`/v1/uploads…`): submit a photo, read its status, appeal, fetch it.

Clients authenticate with an API key and see only their own client's uploads (another
client's upload is a 404, like a missing one); signed-in reviewers see every upload, and only
they get the photo itself. The upload body is parsed here (not by FastAPI) so a wrong content
type is a 415 and every error has the `{"detail": {"reason", "message"}}` shape.

`POST /v1/uploads` honours an `Idempotency-Key` header (1-128 characters, per client): a retry
with the same key, photo and user_id answers 200 with the first upload and
`Idempotent-Replayed: true` instead of 201 and a new row; the same key with another photo or
user_id is a 422 `idempotency_key_reused` (as the IETF Idempotency-Key draft suggests).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Request, Response, status
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from photosieve.service import appeals, security, views
from photosieve.service.batching import ScoringBusy
from photosieve.service.decoding import DecodeBusy, DecodeGate
from photosieve.service.deps import Client, DbSession, ImagesDep, ModeratorDep, SettingsDep
from photosieve.service.hygiene import check_field
from photosieve.service.limits import BODY_TOO_LARGE
from photosieve.service.moderation import IdempotencyKeyReused
from photosieve.service.schemas import AppealRequest, ErrorResponse, UploadCreated, UploadPublic
from photosieve.store import uploads
from photosieve.store.queue import QueueError
from photosieve.vision.preprocess import ImageDecodeError

router = APIRouter(prefix="/v1", tags=["uploads"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 404, 409, 413, 415, 422, 503)
}
MAX_USER_ID = 128
MAX_IDEMPOTENCY_KEY = 128
_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["image", "user_id"],
                    "properties": {
                        "image": {"type": "string", "format": "binary"},
                        "user_id": {"type": "string", "minLength": 1, "maxLength": 128},
                    },
                }
            }
        },
    }
}
_MEDIA_TYPES = {"jpeg": "image/jpeg", "mpo": "image/jpeg", "png": "image/png", "webp": "image/webp"}


def _error(code: int, reason: str, message: str) -> HTTPException:
    return HTTPException(code, detail={"reason": reason, "message": message})


def _disconnected(request: Request) -> HTTPException:
    """The typed answer when the body stopped arriving (the client rarely sees it)."""
    if request.scope.get(BODY_TOO_LARGE):
        return _error(413, "body_too_large", "request body is larger than the limit")
    return _error(400, "client_disconnected", "the request body ended early")


async def _read_form(request: Request, max_bytes: int) -> tuple[bytes, str]:
    try:
        return await _parse_form(request, max_bytes)
    except ClientDisconnect as exc:
        raise _disconnected(request) from exc


async def _parse_form(request: Request, max_bytes: int) -> tuple[bytes, str]:
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise _error(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send multipart/form-data with an `image` file and a `user_id` field",
        )
    try:
        form = await request.form(max_files=1, max_fields=4, max_part_size=4096)
    except StarletteHTTPException as exc:
        raise _error(400, "bad_form", f"could not parse the form: {exc.detail}") from exc
    try:
        image, user_id = form.get("image"), form.get("user_id")
        if not isinstance(image, UploadFile):
            raise _error(422, "missing_image", "the form needs a file field `image`")
        if not isinstance(user_id, str):
            raise _error(422, "missing_user_id", "the form needs a text field `user_id`")
        clean_user_id = check_field("user_id", user_id, max_chars=MAX_USER_ID)
        data = await image.read(max_bytes + 1)
    finally:
        await form.close()
    if len(data) > max_bytes:
        raise _error(413, "body_too_large", f"the image is larger than {max_bytes} bytes")
    return data, clean_user_id


@router.post(
    "/uploads",
    status_code=status.HTTP_201_CREATED,
    response_model=UploadCreated,
    responses={
        **_ERRORS,
        200: {"model": UploadCreated, "description": "a retry: the Idempotency-Key's upload"},
    },
    openapi_extra=_UPLOAD_BODY,
    summary="Moderate an uploaded photo",
)
async def create_upload(
    request: Request,
    response: Response,
    client: Client,
    moderator: ModeratorDep,
    settings: SettingsDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            description="1-128 characters; repeat it on a retry to get the first upload back "
            "(200) instead of a new one"
        ),
    ] = None,
) -> UploadCreated:
    """Score the photo and decide: `approved`, `pending_review` (queued) or `removed`."""
    key = None
    if idempotency_key is not None:
        key = check_field("idempotency_key", idempotency_key, max_chars=MAX_IDEMPOTENCY_KEY)
    data, user_id = await _read_form(request, settings.max_upload_bytes)
    gate: DecodeGate = request.app.state.decode_gate
    try:
        # The header is judged first (cheap); the decode waits for a slot without holding the
        # event loop, so a hostile upload cannot stall everyone else's. Decoding and the rest
        # of the upload share one thread-pool call; the slot is freed once decoded.
        header = await run_in_threadpool(moderator.read_header, data)
        outcome = await gate.run_then(
            header,
            lambda: moderator.decode_upload(data),
            lambda decoded: moderator.moderate_upload(
                data,
                user_id,
                api_key_id=client.id,
                client_id=client.client_id,
                idempotency_key=key,
                decoded=decoded,
            ),
        )
    except ImageDecodeError as exc:
        raise _error(422, exc.reason, exc.message) from exc
    except IdempotencyKeyReused as exc:
        raise _error(422, exc.reason, str(exc)) from exc
    except DecodeBusy as exc:
        raise HTTPException(
            503, detail={"reason": "busy", "message": str(exc)}, headers={"Retry-After": "5"}
        ) from exc
    except ScoringBusy as exc:  # the scoring queue is full: shed load instead of queueing
        raise HTTPException(
            503, detail={"reason": "busy", "message": str(exc)}, headers={"Retry-After": "1"}
        ) from exc
    response.headers["Location"] = f"/v1/uploads/{outcome.upload.id}"
    if outcome.replayed:
        response.status_code = status.HTTP_200_OK
        response.headers["Idempotent-Replayed"] = "true"
    return views.upload_created(outcome.upload, outcome.queued_as)


@router.get("/uploads/{upload_id}", response_model=UploadPublic, responses=_ERRORS)
def get_upload(upload_id: str, request: Request, session: DbSession) -> UploadPublic:
    """An upload's current decision: a reviewer sees any, an API key only its client's."""
    if security.session_user(request, session) is not None:
        upload = uploads.get(session, upload_id)
    else:
        key = security.require_api_key(request, session)
        upload = uploads.get_for_client(session, upload_id, key.client_id)
    if upload is None:
        raise _error(404, "not_found", f"no upload {upload_id}")
    return views.upload_public(upload)


@router.post("/uploads/{upload_id}/appeal", response_model=UploadPublic, responses=_ERRORS)
def appeal_upload(
    upload_id: str, client: Client, session: DbSession, body: AppealRequest | None = None
) -> UploadPublic:
    """Send the client's removed upload to the review queue as an appeal, with the user's
    optional reason (repeating an open appeal is harmless)."""
    reason = body.reason.strip() if body is not None and body.reason else None
    try:
        upload = appeals.appeal(session, upload_id, client_id=client.client_id, reason=reason)
    except QueueError as exc:
        code = 404 if exc.reason == "not_found" else 409
        raise _error(code, exc.reason, exc.message) from exc
    return views.upload_public(upload)


@router.get(
    "/uploads/{upload_id}/image",
    responses={**_ERRORS, 200: {"content": {"image/*": {}}}},
    response_class=Response,
)
def get_upload_image(
    upload_id: str, request: Request, session: DbSession, images: ImagesDep
) -> Response:
    """The photo itself: signed-in reviewers only, never cached by shared caches."""
    security.require_user(request, session)
    upload = uploads.get(session, upload_id)
    if upload is None:
        raise _error(404, "not_found", f"no upload {upload_id}")
    try:
        data = images.read(upload.sha256)
    except FileNotFoundError as exc:  # a StorageError (store unreachable) answers 503
        raise _error(404, "image_missing", "the stored photo is missing") from exc
    return Response(
        data,
        media_type=_MEDIA_TYPES.get(upload.image_format, f"image/{upload.image_format}"),
        headers={"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"},
    )
