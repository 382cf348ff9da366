"""The `create_app(settings)` factory: engine, migrations, scorer, stores, middleware, routers.

Nothing happens at import. `create_app` resolves the cookie-signing key (configured, or created
once in the workdir: `service.secret_key`), checks its folders are writable and refuses an empty
database beside stored photos (`service.startup`), migrates the database to the newest schema
(under a lock), finishes any image write a crash interrupted (and holds the image store's
serving lock, so a worker starting beside this one leaves its uploads alone: `store.images`),
loads the registry's live model (a fresh install registers the configured bundle; unless a
scorer is passed in), keeps it in step with the registry (`service.models.ModelSwitcher`:
promote, rollback and shadow without a restart) and wires the routes split by role
(`routes.api`, `routes.review`, `routes.health`, `routes.ui`). Decodes run under a `DecodeGate`
(`service.decoding`); concurrent uploads are scored together by a `MicroBatcher`
(`service.batching`), closed by the app's lifespan; the webhook sender's thread
(`service.webhooks`) runs for the app's lifespan. `uvicorn --workers N --factory
photosieve.service.app:create_app` runs N of them on one database (`prepare` does the shared
start-up work once beforehand for `photosieve serve --workers N`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from sqlalchemy.exc import InternalError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware

from photosieve import __version__
from photosieve.service.batching import ImageScorer, MicroBatcher
from photosieve.service.config import Settings
from photosieve.service.decoding import DecodeGate, return_freed_memory
from photosieve.service.forecast import ForecastCache
from photosieve.service.hygiene import InputHygiene, http_error_handler, validation_error_handler
from photosieve.service.limits import BodySizeLimit
from photosieve.service.metrics import Metrics
from photosieve.service.models import ModelSwitcher, live_bundle_path, load_live_scorer
from photosieve.service.moderation import Moderator
from photosieve.service.routes import api, health, models, review, ui
from photosieve.service.secret_key import resolve_secret_key
from photosieve.service.startup import preflight
from photosieve.service.webhooks import WebhookSender
from photosieve.store import uploads
from photosieve.store.db import make_engine, make_sessionmaker, migrate
from photosieve.store.models import utcnow
from photosieve.store.pdq_bank import PdqBank
from photosieve.store.photos import StorageError

log = logging.getLogger(__name__)
# Room for the multipart envelope and the user_id field around the image itself.
FORM_OVERHEAD_BYTES = 64 * 1024


# What `uvicorn --workers N --factory` (and `photosieve serve --workers N`) imports in each worker.
APP_FACTORY = "photosieve.service.app:create_app"


def prepare(settings: Settings) -> None:
    """The start-up work of `create_app` that is shared by every worker, done once before they
    start: the checks pass, the secret key exists, the schema is current, there is a model to
    serve (the registry's live one, or the configured bundle). (Each worker's `create_app`
    repeats it; every step is safe when workers race.)"""
    preflight(settings)
    resolve_secret_key(settings)
    engine = make_engine(settings.resolved_database_url)
    try:
        migrate(engine)
        live_bundle_path(make_sessionmaker(engine), settings)  # ValueError: nothing to serve
    finally:
        engine.dispose()


def _model_version(scorer: ImageScorer) -> str:
    bundle = getattr(scorer, "bundle", None)
    return str(getattr(bundle, "version", "") or "unknown")


def create_app(settings: Settings | None = None, *, scorer: ImageScorer | None = None) -> FastAPI:
    """Build the moderation service. `scorer` defaults to the bundle named in `settings`."""
    settings = settings if settings is not None else Settings()
    images = settings.photo_store()  # a folder, or an S3 bucket (`PHOTOSIEVE_STORAGE_URL`)
    # Writable folders and store; no empty database created beside stored photos (StartupError).
    preflight(settings, images=images)
    secret_key = resolve_secret_key(settings)  # configured, or generated once in the workdir
    engine = make_engine(settings.resolved_database_url)
    migrate(engine)
    sessions = make_sessionmaker(engine)
    # The registry's live model (a fresh install registers the configured bundle as live).
    scorer = scorer if scorer is not None else load_live_scorer(sessions, settings)

    def is_recorded(sha256: str) -> bool:
        with sessions() as session:
            return uploads.exists_with_sha256(session, sha256)

    # Held while this process serves: a worker starting beside it leaves its uploads in flight.
    serving, published, deleted = images.start_serving(is_recorded)
    if published or deleted:
        log.warning("image store recovery: %d published, %d deleted", published, deleted)
    metrics = Metrics()
    batcher = MicroBatcher(
        batch_max=settings.resolved_batch_max,
        window_ms=settings.batch_window_ms,
        queue_max=settings.batch_queue_max,
    )

    sender = WebhookSender(settings, sessions)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # The first upload must not pay for lazy imports or the first drift verdict; a database
        # that is not there yet is the readiness probe's to report, not a reason not to start.
        try:
            await anyio.to_thread.run_sync(moderator.warm_up)
        except Exception:
            log.warning("warm-up failed; the first upload pays for it", exc_info=True)
        if settings.webhook_worker:
            sender.start()  # signed callbacks of final decisions (service.webhooks)
        yield
        sender.stop()
        batcher.close()  # scores what is queued, then stops the scoring thread
        serving.close()
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
    app.state.serving = serving
    app.state.metrics = metrics
    app.state.webhooks = sender
    app.state.forecast = ForecastCache(settings.drift_check_seconds)  # admin page + chart
    app.state.scorer = scorer
    app.state.model_version = _model_version(scorer)
    app.state.batcher = batcher
    pdq_bank = PdqBank()
    with sessions() as session:  # the known-bad PDQ index, built once from the database
        pdq_bank.load(session)
    moderator = Moderator(
        settings, sessions, scorer, images, metrics, batcher=batcher, pdq_bank=pdq_bank
    )
    app.state.moderator = moderator

    def switched(new: ImageScorer) -> None:
        app.state.scorer = new
        app.state.model_version = _model_version(new)

    switcher = ModelSwitcher(
        sessions, moderator, check_seconds=settings.model_check_seconds, on_switch=switched
    )
    switcher.live_version = _model_version(scorer)
    switcher.refresh(force=True)  # a registry that names another live model or a shadow wins
    moderator.refresh_models = switcher.refresh
    app.state.models = switcher
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

    @app.exception_handler(StorageError)
    async def storage_unavailable(_request: Request, exc: Exception) -> JSONResponse:
        # The photo store (an S3 bucket, a full disk) refused or did not answer: nothing was
        # recorded, the request may be retried.
        log.error("photo store error: %s", exc)
        detail = {
            "reason": "storage_unavailable",
            "message": "the photo store cannot take this request now; see /readyz",
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
    app.include_router(models.router)
    app.include_router(ui.router)
    return app
