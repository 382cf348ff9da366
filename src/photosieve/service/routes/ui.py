"""Reviewer UI routes: sign-in, queue, history and admin pages (server-rendered Jinja2).

Pages never answer anonymous visitors: they redirect to `/login`. The queue page is a shell;
its script (`ui/static/review.js`) claims batches and records decisions through the JSON review
API (`routes.review`) with the session cookie (SameSite=Lax) plus the session's CSRF token in
`X-CSRF-Token`. The sign-in and sign-out forms carry the same token as a hidden field. Sign-in is
throttled (`service.throttle`: 429 with `Retry-After` and a message on the form); sign-out
revokes the server-side session (`service.sessions`).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from photosieve.service import admin_views, security, sessions, throttle
from photosieve.service.deps import DbSession, MaybeUser, ModeratorDep, SettingsDep
from photosieve.store import queue, registry, stats, webhooks
from photosieve.store.models import Role, User, utcnow

router = APIRouter(include_in_schema=False)

UI_DIR = Path(__file__).resolve().parent.parent / "ui"
TEMPLATES_DIR = UI_DIR / "templates"
STATIC_DIR = UI_DIR / "static"
_STATIC_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}
BATCH_SIZE = 12  # photos per claimed batch: a screenful of big photos
HISTORY_LIMIT = 100
KIND_TEXT = {
    "model_band": ("Model", "model"),
    "appeal": ("Appeal", "appeal"),
    "audit": ("Audit", "audit"),
    "hash_match": ("Hash match", "hash"),
}
# Content-Security-Policy: everything from this origin, nothing inline, no framing.
_CSP = (
    "default-src 'self'; img-src 'self'; script-src 'self'; style-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


@functools.cache
def _static_version(name: str) -> str:
    return hashlib.sha256((STATIC_DIR / name).read_bytes()).hexdigest()[:10]


def static_url(name: str) -> str:
    """URL of a static file with a content hash, so browsers never run a stale script."""
    return f"/static/{name}?v={_static_version(name)}"


@functools.cache
def templates() -> Jinja2Templates:
    """The page templates (built on first use, not at import)."""
    engine = Jinja2Templates(directory=str(TEMPLATES_DIR))
    engine.env.globals["static_url"] = static_url
    engine.env.globals["pct"] = _pct
    engine.env.globals["label_text"] = _label_text
    return engine


def _label_text(label: str) -> str:
    return "OK" if label == "ok" else label.capitalize()


def _pct(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.0f}%" if whole else ""


def _page(
    request: Request,
    name: str,
    context: dict[str, Any],
    *,
    user: User | None,
    status_code: int = 200,
) -> Response:
    context = {"user": user, "csrf_token": security.csrf_token(request), **context}
    response = templates().TemplateResponse(request, name, context, status_code=status_code)
    _harden(response)
    return response


def _harden(response: Response) -> None:
    response.headers["Content-Security-Policy"] = _CSP
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"


def _to_login(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='/')}", status.HTTP_303_SEE_OTHER)


def _safe_next(value: object) -> str:
    """A same-site path to go to after sign-in (never another host)."""
    if isinstance(value, str) and value.startswith("/") and not value.startswith(("//", "/\\")):
        return value
    return "/review"


@router.get("/")
def home(user: MaybeUser) -> RedirectResponse:
    return RedirectResponse("/review" if user else "/login", status.HTTP_303_SEE_OTHER)


@router.get("/login")
def login_page(request: Request, user: MaybeUser, next: str = "/review") -> Response:
    if user is not None:
        return RedirectResponse(_safe_next(next), status.HTTP_303_SEE_OTHER)
    return _page(request, "login.html", {"next_url": _safe_next(next), "error": None}, user=None)


@router.post("/login")
async def login_submit(request: Request, session: DbSession, settings: SettingsDep) -> Response:
    form = await request.form(max_files=0, max_fields=8, max_part_size=4096)
    username, password = form.get("username"), form.get("password")
    next_url = _safe_next(form.get("next"))

    def again(error: str, code: int, headers: dict[str, str] | None = None) -> Response:
        shown = username if isinstance(username, str) else ""
        context = {"next_url": next_url, "error": error, "username": shown}
        page = _page(request, "login.html", context, user=None, status_code=code)
        page.headers.update(headers or {})
        return page

    if not security.csrf_ok(request, form.get("csrf_token")):
        return again("Your sign-in form expired. Please try again.", status.HTTP_403_FORBIDDEN)
    if not isinstance(username, str) or not isinstance(password, str) or not username.strip():
        return again("Enter your username and password.", status.HTTP_422_UNPROCESSABLE_CONTENT)
    try:
        user = await run_in_threadpool(
            throttle.login,
            session,
            username[:64],
            password[:1024],
            client_addr=sessions.client_addr(request),
            now=sessions.clock(request),
            settings=settings,
        )
    except throttle.LoginThrottled as exc:
        minutes = max(1, round(exc.retry_after / 60))
        return again(
            f"Too many failed sign-ins. Try again in about {minutes} minute(s).",
            status.HTTP_429_TOO_MANY_REQUESTS,
            {"Retry-After": str(exc.retry_after)},
        )
    if user is None:
        return again("Wrong username or password.", status.HTTP_401_UNAUTHORIZED)
    await run_in_threadpool(sessions.sign_in, request, session, user)
    return RedirectResponse(next_url, status.HTTP_303_SEE_OTHER)


@router.post("/logout")
async def logout_submit(request: Request, user: MaybeUser, session: DbSession) -> RedirectResponse:
    form = await request.form(max_files=0, max_fields=4, max_part_size=1024)
    if user is not None and security.csrf_ok(request, form.get("csrf_token")):
        await run_in_threadpool(sessions.sign_out, request, session)
    return RedirectResponse("/login", status.HTTP_303_SEE_OTHER)


@router.get("/logout")
def logout_link(request: Request, user: MaybeUser, session: DbSession) -> RedirectResponse:
    """Sign out by link too (losing a session is the worst a forged link can do)."""
    sessions.sign_out(request, session)
    return RedirectResponse("/login", status.HTTP_303_SEE_OTHER)


@router.get("/review")
def review_page(request: Request, user: MaybeUser, settings: SettingsDep) -> Response:
    if user is None:
        return _to_login(request)
    context = {
        "active": "review",
        "undo_seconds": settings.undo_window_seconds,
        "batch_size": min(BATCH_SIZE, settings.claim_batch_max),
    }
    return _page(request, "review.html", context, user=user)


def _when(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%d %b %H:%M:%S")


@router.get("/history")
def history_page(
    request: Request, user: MaybeUser, session: DbSession, everyone: bool = False
) -> Response:
    if user is None:
        return _to_login(request)
    everyone = everyone and user.role == Role.ADMIN.value
    rows = queue.history(session, reviewer_id=None if everyone else user.id, limit=HISTORY_LIMIT)
    shown = []
    for row in rows:
        text, css = KIND_TEXT.get(row.item.kind, (row.item.kind, "model"))
        shown.append(
            {
                "upload_id": row.upload.id,
                "image_url": f"/v1/uploads/{row.upload.id}/image",
                "decided_at_iso": row.decision.decided_at.isoformat(),
                "decided_at_text": _when(row.decision.decided_at),
                "label": row.decision.label,
                "undone": row.decision.undone,
                "kind_text": text,
                "kind_class": css,
                "score_text": f"{row.upload.score:.2f}",
                "reviewer": row.reviewer,
            }
        )
    context = {"active": "history", "rows": shown, "everyone": everyone}
    return _page(request, "history.html", context, user=user)


def audit_rows(summary: dict[str, Any], recall: dict[str, Any] | None) -> list[tuple[str, str]]:
    """Audit results and the production recall they certify (empty before the first audit).

    The bound is `store.evidence.production_recall`: the review band's census and the audits of
    auto-approved uploads (weighted by their recorded probability), exact for this look, and a
    confidence sequence valid however often the page is reloaded.
    """
    if int(summary["audits_decided"]) == 0 and recall is None:
        return []
    rows = [
        ("Audits decided (all time)", str(summary["audits_decided"])),
        ("Found offensive", str(summary["audits_offensive"])),
    ]
    if recall is not None:
        level = f"{recall['confidence']:.0%}"
        rows += [
            ("Uploads with evidence (live model)", f"{recall['photos']:,}"),
            ("Offensive caught (labelled)", f"{recall['caught']:,}"),
            (f"Offensive missed, {level} upper bound", f"{recall['misses_upper_bound']:,}"),
            (f"Recall, {level} lower bound", f"{100 * recall['recall_lower_bound']:.1f}%"),
            (f"Recall, {level} lower bound valid at every look",
             f"{100 * recall['anytime_recall_lower_bound']:.1f}%"),
        ]  # fmt: skip
    return rows


MODELS_SHOWN = 10  # registry rows on the admin page (all of them: GET /v1/admin/models)


def _not_admin(request: Request, user: User | None) -> Response | None:
    """Sign-in redirect or 403 page unless an admin is signed in."""
    if user is None:
        return _to_login(request)
    if user.role != Role.ADMIN.value:
        denied = {"title": "Admins only", "message": "This page is for admins."}
        return _page(request, "error.html", denied, user=user, status_code=403)
    return None


@router.get("/admin")
def admin_page(
    request: Request,
    user: MaybeUser,
    session: DbSession,
    moderator: ModeratorDep,
    settings: SettingsDep,
) -> Response:
    refused = _not_admin(request, user)
    if refused is not None:
        return refused
    bundle = getattr(moderator.scorer, "bundle", None)
    drift = moderator.drift_report()
    safe = moderator.drift.safe_approve_below(bundle)
    summary = stats.summary(session, utcnow())
    uploads_today = list(summary["uploads_today"].items())
    decisions_today = list(summary["decisions_today"].items())
    context: dict[str, Any] = {
        "active": "admin",
        "since_text": summary["since"].strftime("%d %b %Y %H:%M"),
        "queue_depth": list(summary["queue_depth"].items()),
        "queue_total": summary["queue_total"],
        "uploads_today": uploads_today,
        "uploads_total": sum(n for _, n in uploads_today),
        "decisions_today": decisions_today,
        "decisions_total": sum(n for _, n in decisions_today),
        "audit_rows": audit_rows(summary, moderator.production_recall(session)),
        "extra_rows": [
            ("Appeals today", summary["appeals_today"]),
            ("Reviewers active today", summary["reviewers_active_today"]),
            ("Known-bad hashes in the bank", summary["known_bad_hashes"]),
        ],
        "drift": drift,
        "drift_rows": admin_views.drift_rows(drift, safe),
        "forecast": admin_views.forecast_rows(
            request.app.state.forecast.get(session, settings, bundle)
        ),
        "deliveries": admin_views.delivery_rows(webhooks.recent(session, admin_views.DELIVERY_LOG)),
        "models": registry.list_versions(session)[:MODELS_SHOWN],
    }
    return _page(request, "admin.html", context, user=user)


@router.get("/admin/capacity.svg")
def capacity_chart(
    request: Request,
    user: MaybeUser,
    session: DbSession,
    moderator: ModeratorDep,
    settings: SettingsDep,
) -> Response:
    """The team forecast chart (server-rendered SVG, admins only)."""
    refused = _not_admin(request, user)
    if refused is not None:
        return refused
    from photosieve.feedback.capacity_chart import capacity_svg

    bundle = getattr(moderator.scorer, "bundle", None)
    forecast = request.app.state.forecast.get(session, settings, bundle)
    body = capacity_svg(forecast["forecast"], forecast["curve"], forecast["workload"])
    response = Response(body, media_type="image/svg+xml")
    _harden(response)
    # matplotlib styles its SVG inline; the image may use that and nothing else.
    response.headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
    return response


@router.get("/static/{name}")
def static_file(name: str) -> FileResponse:
    """The UI's own CSS and scripts (a fixed set of files; nothing else is reachable)."""
    path = STATIC_DIR / name
    if (
        "/" in name
        or "\\" in name
        or name.startswith(".")
        or path.suffix not in _STATIC_TYPES
        or not path.is_file()
    ):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such file")
    return FileResponse(
        path,
        media_type=_STATIC_TYPES[path.suffix],
        headers={"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"},
    )
