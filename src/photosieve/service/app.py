"""The `create_app(settings)` factory: engine, migrations, scorer, stores, middleware, routers.

Nothing happens at import. `create_app` resolves the cookie-signing key (configured, or created
once in the workdir: `service.secret_key`), checks its folders are writable and refuses an empty
database beside stored photos (`service.startup`), migrates the database to the newest schema,
finishes any image write a crash interrupted, loads the model bundle (unless a scorer is passed
in) and wires the routes split by role (`routes.api`, `routes.review`, `routes.health`,
`routes.ui`). Decodes run under a `DecodeGate` (`service.decoding`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from sqlalchemy.exc import InternalError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware

from photosieve import __version__
from photosieve.bundle import ModelBundle
from photosieve.scoring import Scorer
from photosieve.service.config import Settings
from photosieve.service.decoding import DecodeGate, return_freed_memory
from photosieve.service.hygiene import InputHygiene, http_error_handler, validation_error_handler
from photosieve.service.limits import BodySizeLimit
from photosieve.service.metrics import Metrics
from photosieve.service.moderation import ImageScorer, Moderator
from photosieve.service.routes import api, health, review, ui
from photosieve.service.secret_key import resolve_secret_key
from photosieve.service.startup import preflight
from photosieve.store import uploads
from photosieve.store.db import make_engine, make_sessionmaker, migrate
from photosieve.store.images import ImageStore
from photosieve.store.models import utcnow
from photosieve.store.pdq_bank import PdqBank

log = logging.getLogger(__name__)
# Room for the multipart envelope and the user_id field around the image itself.
FORM_OVERHEAD_BYTES = 64 * 1024


def load_scorer(settings: Settings) -> ImageScorer:
    """The production scorer: the trained bundle at `settings.resolved_bundle_path`."""
    path = settings.resolved_bundle_path
    if not (path / "bundle.json").is_file():
        raise ValueError(
            f"no model bundle at {path}; train one (`photosieve train` then `photosieve "
            "calibrate`) or point PHOTOSIEVE_BUNDLE_PATH / --bundle at one"
        )
    scorer: ImageScorer = Scorer(ModelBundle.load(path))
    return scorer


def _model_version(scorer: ImageScorer) -> str:
    bundle = getattr(scorer, "bundle", None)
    return str(getattr(bundle, "version", "") or "unknown")


def create_app(settings: Settings | None = None, *, scorer: ImageScorer | None = None) -> FastAPI:
    """Build the moderation service. `scorer` defaults to the bundle named in `settings`."""
    settings = settings if settings is not None else Settings()
    # Writable folders; no empty database created beside stored photos (StartupError).
    preflight(settings)
    secret_key = resolve_secret_key(settings)  # configured, or generated once in the workdir
    scorer = scorer if scorer is not None else load_scorer(settings)
    engine = make_engine(settings.resolved_database_url)
    migrate(engine)
    sessions = make_sessionmaker(engine)
    images = ImageStore(settings.resolved_data_dir)

    def is_recorded(sha256: str) -> bool:
        with sessions() as session:
            return uploads.exists_with_sha256(session, sha256)

    published, deleted = images.recover(is_recorded)
    if published or deleted:
        log.warning("image store recovery: %d published, %d deleted", published, deleted)
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        engine.dispose()

    # Swagger UI and ReDoc served from the fastapi-offline package's files: /docs works offline.
    app = FastAPIOffline(
        title="photosieve",
        version=__version__,
        summary="Avatar photo moderation: scoring, review queue, appeals, known-bad hash bank.",
        description="Upload clients authenticate with an API key (`Authorize` → ApiKeyBearer); "
        "reviewers with a session cookie from `POST /v1/auth/login`.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessions = sessions
    app.state.images = images
    app.state.metrics = metrics
    app.state.scorer = scorer
    app.state.model_version = _model_version(scorer)
    pdq_bank = PdqBank()
    with sessions() as session:  # the known-bad PDQ index, built once from the database
        pdq_bank.load(session)
    app.state.moderator = Moderator(settings, sessions, scorer, images, metrics, pdq_bank=pdq_bank)
    app.state.clock = utcnow  # sessions and sign-in throttling read the time here (tests move it)
    app.state.decode_gate = DecodeGate(
        settings.decode_slots,
        settings.heavy_decode_slots,
        max_wait_s=settings.decode_wait_seconds,
    )
    return_freed_memory()

    @app.exception_handler(OperationalError)
    @app.exception_handler(InternalError)
    async def database_unavailable(_request: Request, exc: Exception) -> JSONResponse:
        # A read-only, locked or unreachable database: the request may be retried; /readyz
        # says which check fails.
        log.error("database error: %s", exc)
        detail = {
            "reason": "database_unavailable",
            "message": "the database cannot take this request now; see /readyz",
        }
        return JSONResponse({"detail": detail}, status_code=503, headers={"Retry-After": "5"})

    app.add_middleware(
        SessionMiddleware,
        secret_key=secret_key,
        session_cookie="photosieve_session",
        max_age=settings.session_max_age_seconds,
        same_site="lax",
        https_only=settings.session_https_only,
    )
    # Outermost first on the wire: the size limit, then input hygiene (bounded bodies only).
    app.add_middleware(InputHygiene)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_upload_bytes + FORM_OVERHEAD_BYTES)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)

    app.include_router(health.router)
    app.include_router(api.router)
    app.include_router(review.router)
    app.include_router(ui.router)
    return app
