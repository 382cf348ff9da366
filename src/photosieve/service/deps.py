"""FastAPI dependencies of the service as `Annotated` aliases (`DbSession`, `Reviewer`, …).

Everything comes from `request.app.state` (filled by `create_app`), never from module globals.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import (
    APIKeyCookie,
    APIKeyHeader,
    HTTPAuthorizationCredentials,
    HTTPBearer,
)
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from photosieve.service import security
from photosieve.service.config import Settings
from photosieve.service.moderation import Moderator
from photosieve.store.models import ApiKey, User
from photosieve.store.photos import PhotoStore


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_db(request: Request) -> Iterator[Session]:
    """One database session per request, closed afterwards (rolled back if not committed)."""
    with request.app.state.sessions() as session:
        yield session


def get_moderator(request: Request) -> Moderator:
    moderator: Moderator = request.app.state.moderator
    return moderator


def get_images(request: Request) -> PhotoStore:
    images: PhotoStore = request.app.state.images
    return images


DbSession = Annotated[Session, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
ModeratorDep = Annotated[Moderator, Depends(get_moderator)]
ImagesDep = Annotated[PhotoStore, Depends(get_images)]


def current_user(
    request: Request,
    session: DbSession,
    _cookie: Annotated[str | None, Security(SESSION_COOKIE)] = None,
) -> User:
    """The signed-in reviewer or admin (401 otherwise); state-changing calls need CSRF."""
    user = security.require_user(request, session)
    security.check_csrf(request)
    session.commit()  # end the lookup's read transaction; the route may open a write one
    return user


def current_admin(
    request: Request,
    session: DbSession,
    _cookie: Annotated[str | None, Security(SESSION_COOKIE)] = None,
) -> User:
    """The signed-in admin (401 signed out, 403 for a reviewer)."""
    user = security.require_user(request, session, admin=True)
    security.check_csrf(request)
    session.commit()
    return user


def optional_user(request: Request, session: DbSession) -> User | None:
    """The signed-in user or None (for pages that redirect to sign-in)."""
    user = security.session_user(request, session)
    session.commit()
    return user


# Declared in the OpenAPI document (Swagger's Authorize button); `security` does the checking.
BEARER = HTTPBearer(
    scheme_name="ApiKeyBearer",
    description="An upload client's API key (`photosieve apikey create`): `Bearer psk_…`",
    auto_error=False,
)
API_KEY_HEADER = APIKeyHeader(
    name="X-API-Key", scheme_name="ApiKeyHeader", description="The API key, as a header",
    auto_error=False,
)  # fmt: skip
SESSION_COOKIE = APIKeyCookie(
    name="photosieve_session", scheme_name="ReviewerSession",
    description="A reviewer's session (sign in with POST /v1/auth/login); state-changing calls "
    "also send the session's X-CSRF-Token header",
    auto_error=False,
)  # fmt: skip


async def api_client(
    request: Request,
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)] = None,
    _header: Annotated[str | None, Security(API_KEY_HEADER)] = None,
) -> ApiKey:
    """The calling client's API key (401 without a valid one): one trip to the thread pool with
    a session of its own (a `DbSession` dependency would take three: open, look up, close)."""
    return await run_in_threadpool(_api_key_of, request)


def _api_key_of(request: Request) -> ApiKey:
    with request.app.state.sessions() as session:
        return security.require_api_key(request, session)  # loaded; usable after close


Reviewer = Annotated[User, Depends(current_user)]
Admin = Annotated[User, Depends(current_admin)]
MaybeUser = Annotated[User | None, Depends(optional_user)]
Client = Annotated[ApiKey, Depends(api_client)]
