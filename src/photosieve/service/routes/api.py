"""Upload-client routes (`/v1/uploads…`): submit a photo, read its status, appeal, fetch it.

Clients authenticate with an API key; the photo itself is served to signed-in reviewers only.
The upload body is parsed here (not by FastAPI) so a wrong content type is a 415 and every
error has the `{"detail": {"reason", "message"}}` shape.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response, status
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from photosieve.service import security, views
from photosieve.service.decoding import DecodeBusy, DecodeGate
from photosieve.service.deps import Client, DbSession, ImagesDep, ModeratorDep, SettingsDep
from photosieve.service.schemas import ErrorResponse, UploadCreated, UploadPublic
from photosieve.store import uploads
from photosieve.store.queue import QueueError
from photosieve.vision.preprocess import ImageDecodeError

router = APIRouter(prefix="/v1", tags=["uploads"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 404, 409, 413, 415, 422, 503)
}
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


async def _read_form(request: Request, max_bytes: int) -> tuple[bytes, str]:
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
        if not isinstance(user_id, str) or not 1 <= len(user_id.strip()) <= 128:
            raise _error(422, "missing_user_id", "the form needs `user_id` (1-128 characters)")
        data = await image.read(max_bytes + 1)
    finally:
        await form.close()
    if len(data) > max_bytes:
        raise _error(413, "body_too_large", f"the image is larger than {max_bytes} bytes")
    return data, user_id.strip()


@router.post(
    "/uploads",
    status_code=status.HTTP_201_CREATED,
    response_model=UploadCreated,
    responses=_ERRORS,
    openapi_extra=_UPLOAD_BODY,
    summary="Moderate an uploaded photo",
)
async def create_upload(
    request: Request,
    response: Response,
    client: Client,
    moderator: ModeratorDep,
    settings: SettingsDep,
) -> UploadCreated:
    """Score the photo and decide: `approved`, `pending_review` (queued) or `removed`."""
    data, user_id = await _read_form(request, settings.max_upload_bytes)
    gate: DecodeGate = request.app.state.decode_gate
    try:
        # The header is judged first (cheap); the decode waits for a slot without holding the
        # event loop, so a hostile upload cannot stall everyone else's.
        header = await run_in_threadpool(moderator.read_header, data)
        decoded = await gate.run(header, lambda: moderator.decode_upload(data))
    except ImageDecodeError as exc:
        raise _error(422, exc.reason, exc.message) from exc
    except DecodeBusy as exc:
        raise HTTPException(
            503, detail={"reason": "busy", "message": str(exc)}, headers={"Retry-After": "5"}
        ) from exc
    outcome = await run_in_threadpool(
        moderator.moderate_upload, data, user_id, api_key_id=client.id, decoded=decoded
    )
    response.headers["Location"] = f"/v1/uploads/{outcome.upload.id}"
    return views.upload_created(outcome.upload, outcome.queued_as)


def _require_client_or_reviewer(request: Request, session: DbSession) -> None:
    if security.session_user(request, session) is None:
        security.require_api_key(request, session)


@router.get("/uploads/{upload_id}", response_model=UploadPublic, responses=_ERRORS)
def get_upload(upload_id: str, request: Request, session: DbSession) -> UploadPublic:
    """An upload's current decision (API key or reviewer session)."""
    _require_client_or_reviewer(request, session)
    upload = uploads.get(session, upload_id)
    if upload is None:
        raise _error(404, "not_found", f"no upload {upload_id}")
    return views.upload_public(upload)


@router.post("/uploads/{upload_id}/appeal", response_model=UploadPublic, responses=_ERRORS)
def appeal_upload(
    upload_id: str, client: Client, session: DbSession, moderator: ModeratorDep
) -> UploadPublic:
    """Send a removed upload to the review queue as an appeal (repeating it is harmless)."""
    try:
        upload = moderator.appeal(session, upload_id)
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
    except FileNotFoundError as exc:
        raise _error(404, "image_missing", "the stored photo is missing") from exc
    return Response(
        data,
        media_type=_MEDIA_TYPES.get(upload.image_format, f"image/{upload.image_format}"),
        headers={"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"},
    )
