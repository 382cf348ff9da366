"""Operational routes: `/healthz` (liveness), `/readyz` (readiness) and `/metrics` (Prometheus).

`/healthz` only says the process is up and answering (restart it if not). `/readyz` says whether
it can do its work: database writable, image store writable, model loaded (see
`service.readiness`); 503 with every check listed when one fails, so a load balancer stops
sending uploads that would fail.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool

from photosieve.service import readiness
from photosieve.service.deps import DbSession, ModeratorDep
from photosieve.service.schemas import Health, Readiness, ReadinessCheck
from photosieve.store import bank, queue, webhooks

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health)
async def healthz(request: Request) -> Health:
    """Liveness: 200 while the process serves requests (touches neither database nor disk)."""
    return Health(status="ok", model_version=request.app.state.model_version)


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "a check failed"}},
)
async def readyz(request: Request) -> JSONResponse:
    """Readiness: database and image store writable, model loaded; 200 or 503 with each check."""
    state = request.app.state
    results = await run_in_threadpool(
        readiness.run_checks,
        [
            lambda: readiness.check_database(state.engine),
            lambda: readiness.check_image_store(state.images),
            lambda: readiness.check_model(state.scorer, state.model_version),
        ],
    )
    ready = all(result.ok for result in results)
    body = Readiness(
        status="ready" if ready else "not_ready",
        checks={r.name: ReadinessCheck(ok=r.ok, detail=r.detail) for r in results},
    )
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(request: Request, session: DbSession, moderator: ModeratorDep) -> PlainTextResponse:
    """Uploads by decision, rejections, decisions, latency histogram, queue depth, bank size,
    the micro-batcher's counters, the drift alarm and webhook events by status."""
    batcher = request.app.state.batcher
    body = request.app.state.metrics.render(
        queue.depth(session),
        bank.count_active(session),
        batcher.snapshot(),
        batcher.waiting(),
        drift=moderator.drift_report(),
        webhooks=webhooks.count_by_status(session),
    )
    return PlainTextResponse(body, media_type="text/plain; version=0.0.4")
