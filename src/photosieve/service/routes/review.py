"""Reviewer and admin routes (`/v1/auth…`, `/v1/review…`, `/v1/admin…`): the UI's JSON API.

Session-cookie auth; writes also need the session's CSRF token in `X-CSRF-Token`.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request, status
from sqlalchemy.orm import Session

from photosieve.records import Label
from photosieve.service import security, sessions, throttle, users, views
from photosieve.service.config import Settings
from photosieve.service.deps import Admin, DbSession, ModeratorDep, Reviewer, SettingsDep
from photosieve.service.schemas import (
    ClaimRequest,
    ClaimResponse,
    DecisionPublic,
    DecisionRequest,
    DriftPublic,
    ErrorResponse,
    HistoryResponse,
    LoginRequest,
    ProductionRecall,
    SignOutEverywhereResponse,
    StatsResponse,
    UserPublic,
    WebhookDeliveryPublic,
)
from photosieve.service.throttle import LoginThrottled
from photosieve.store import accounts, queue, stats, uploads, webhooks
from photosieve.store.models import ReviewDecision, Role, User, utcnow
from photosieve.store.queue import ForbiddenError, QueueError

router = APIRouter(prefix="/v1", tags=["review"])
MAX_ID = 2**31 - 1  # the databases' INTEGER range
ItemId = Annotated[int, Path(ge=1, le=MAX_ID)]
DecisionId = Annotated[int, Path(ge=1, le=MAX_ID)]
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (401, 403, 404, 409, 422, 429)
}


def _queue_error(exc: QueueError) -> HTTPException:
    code = status.HTTP_404_NOT_FOUND if exc.reason == "not_found" else status.HTTP_409_CONFLICT
    if isinstance(exc, ForbiddenError):
        code = status.HTTP_403_FORBIDDEN
    return HTTPException(code, detail={"reason": exc.reason, "message": exc.message})


def _throttled(exc: LoginThrottled) -> HTTPException:
    return HTTPException(
        status.HTTP_429_TOO_MANY_REQUESTS,
        detail={"reason": "too_many_attempts", "message": str(exc)},
        headers={"Retry-After": str(exc.retry_after)},
    )


@router.post("/auth/login", response_model=UserPublic, responses=_ERRORS, tags=["auth"])
def login(
    body: LoginRequest, request: Request, session: DbSession, settings: SettingsDep
) -> UserPublic:
    """Sign in with a password; sets a new session cookie and returns the session's CSRF token.

    Too many failures for the username or from the client address answer 429 with
    `Retry-After` (the password is then not checked).
    """
    try:
        user = throttle.login(
            session,
            body.username,
            body.password,
            client_addr=sessions.client_addr(request),
            now=sessions.clock(request),
            settings=settings,
        )
    except LoginThrottled as exc:
        raise _throttled(exc) from exc
    if user is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail={"reason": "bad_credentials", "message": "wrong username or password"},
        )
    row = sessions.sign_in(request, session, user)
    return UserPublic(id=user.id, username=user.username, role=user.role, csrf_token=row.csrf_token)  # type: ignore[arg-type]


@router.post("/auth/logout", status_code=204, responses=_ERRORS, tags=["auth"])
def logout(request: Request, user: Reviewer, session: DbSession) -> None:
    """End the session on the server (a copy of the cookie stops working too); the items you
    hold go back to the queue unless you are still signed in elsewhere."""
    sessions.sign_out(request, session)


@router.get("/auth/me", response_model=UserPublic, responses=_ERRORS, tags=["auth"])
def me(request: Request, user: Reviewer) -> UserPublic:
    """Who is signed in."""
    token = security.csrf_token(request)
    return UserPublic(id=user.id, username=user.username, role=user.role, csrf_token=token)  # type: ignore[arg-type]


@router.post("/review/claim", response_model=ClaimResponse, responses=_ERRORS)
def claim(
    body: ClaimRequest, user: Reviewer, session: DbSession, settings: SettingsDep
) -> ClaimResponse:
    """Claim up to `limit` items, oldest first (your unexpired claims come back first)."""
    limit = min(body.limit, settings.claim_batch_max)
    ttl = dt.timedelta(seconds=settings.claim_ttl_seconds)
    claimed = queue.claim(session, user.id, limit, ttl)
    depth = sum(queue.depth(session).values())
    return ClaimResponse(
        items=[views.item_public(q.item, q.upload) for q in claimed], queue_depth=depth
    )


@router.post("/review/items/{item_id}/decision", response_model=DecisionPublic, responses=_ERRORS)
def decide(
    item_id: ItemId,
    body: DecisionRequest,
    user: Reviewer,
    session: DbSession,
    moderator: ModeratorDep,
    settings: SettingsDep,
) -> DecisionPublic:
    """Label a claimed item `offensive` (photo removed, hash banked) or `ok` (approved). Final."""
    try:
        decision = moderator.decide(session, item_id, user, Label(body.label))
    except QueueError as exc:
        raise _queue_error(exc) from exc
    depth = sum(queue.depth(session).values())
    return _decision_view(session, decision, user, settings, depth)


@router.post(
    "/review/decisions/{decision_id}/undo", response_model=DecisionPublic, responses=_ERRORS
)
def undo(
    decision_id: DecisionId,
    user: Reviewer,
    session: DbSession,
    moderator: ModeratorDep,
    settings: SettingsDep,
) -> DecisionPublic:
    """Undo your own decision within the undo window; the item is claimed by you again."""
    try:
        decision = moderator.undo(session, decision_id, user)
    except QueueError as exc:
        raise _queue_error(exc) from exc
    return _decision_view(session, decision, user, settings)


def _decision_view(
    session: Session, decision: ReviewDecision, user: User, settings: Settings,
    queue_depth: int | None = None,
) -> DecisionPublic:  # fmt: skip
    """A decision as the API shows it, with its upload's status after the change."""
    upload = uploads.get(session, decision.upload_id)
    assert upload is not None
    return views.decision_public(
        decision, user.username, upload.status, settings.undo_window_seconds, queue_depth
    )


@router.get("/review/history", response_model=HistoryResponse, responses=_ERRORS)
def history(
    user: Reviewer,
    session: DbSession,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    everyone: bool = False,
) -> HistoryResponse:
    """Your recent decisions, newest first (`everyone=true` for admins: all reviewers')."""
    if everyone and user.role != Role.ADMIN.value:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail={"reason": "forbidden", "message": "only admins see everyone's history"},
        )
    rows = queue.history(
        session,
        reviewer_id=None if everyone else user.id,
        limit=limit,
        before_id=before_id,
    )
    return HistoryResponse(items=[views.history_entry(row) for row in rows])


@router.get("/admin/stats", response_model=StatsResponse, responses=_ERRORS, tags=["admin"])
def admin_stats(user: Admin, session: DbSession, moderator: ModeratorDep) -> StatsResponse:
    """Queue depth, today's (UTC) numbers, the live model's recall certified on production and
    the drift alarm (`recertification_needed`)."""
    recall = moderator.production_recall(session)
    report = moderator.drift_report()
    drift = DriftPublic(
        available=report.available, recertification_needed=report.raised,
        reasons=list(report.reasons), uploads=report.uploads, psi=report.psi,
        psi_limit=report.psi_limit, bands_live=report.bands_live,
        bands_expected=report.bands_expected, band_p_value=report.band_p_value,
        recall_upper_bound=report.recall_upper_bound, target_recall=report.target_recall,
        fail_safe_approve_below=moderator.drift.safe_approve_below(
            getattr(moderator.scorer, "bundle", None)
        ),
        note=report.note,
    )  # fmt: skip
    return StatsResponse(
        **stats.summary(session, utcnow()),
        production_recall=None if recall is None else ProductionRecall(**recall),
        recertification_needed=report.raised,
        drift=drift,
    )


@router.get(
    "/admin/webhooks/deliveries",
    response_model=list[WebhookDeliveryPublic],
    responses=_ERRORS,
    tags=["admin"],
)
def admin_webhook_deliveries(
    user: Admin, session: DbSession, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> list[WebhookDeliveryPublic]:
    """The webhook delivery log, newest first: attempts, last answer, next retry."""
    return [
        WebhookDeliveryPublic(
            event_id=row.event_id,
            client=client,
            upload_id=row.upload_id,
            event_type=row.event_type,
            status=row.status,  # type: ignore[arg-type]
            attempts=row.attempts,
            last_status_code=row.last_status_code,
            last_error=row.last_error,
            next_attempt_at=row.next_attempt_at if row.status == "pending" else None,
            created_at=row.created_at,
            delivered_at=row.delivered_at,
        )
        for row, client in webhooks.recent(session, limit)
    ]


UserId = Annotated[int, Path(ge=1, le=MAX_ID)]


@router.post(
    "/admin/users/{user_id}/signout-all",
    response_model=SignOutEverywhereResponse,
    responses=_ERRORS,
    tags=["admin"],
)
def admin_sign_out_everywhere(
    user_id: UserId, request: Request, admin: Admin, session: DbSession
) -> SignOutEverywhereResponse:
    """Revoke every session of a user (their items go back to the queue); audited."""
    target = accounts.get_user(session, user_id)
    if target is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            detail={"reason": "not_found", "message": f"no user {user_id}"},
        )
    done = users.sign_out_everywhere(
        session, target.username, actor_id=admin.id, client=sessions.client_addr(request)
    )
    return SignOutEverywhereResponse(
        user_id=target.id,
        username=target.username,
        revoked_sessions=done.sessions,
        released_items=done.released_items,
    )
