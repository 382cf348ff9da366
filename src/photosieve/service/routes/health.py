"""Operational routes: `/healthz` (liveness + database) and `/metrics` (Prometheus text)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import PlainTextResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from photosieve.service.deps import DbSession
from photosieve.service.schemas import Health
from photosieve.store import bank, queue

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health)
def healthz(request: Request, session: DbSession) -> Health:
    """200 when the database answers; 503 otherwise."""
    try:
        session.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        raise HTTPException(
            503, detail={"reason": "database", "message": "database unavailable"}
        ) from exc
    return Health(status="ok", database="ok", model_version=request.app.state.model_version)


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(request: Request, session: DbSession) -> PlainTextResponse:
    """Uploads by decision, rejections, decisions, latency histogram, queue depth, bank size."""
    body = request.app.state.metrics.render(queue.depth(session), bank.count_active(session))
    return PlainTextResponse(body, media_type="text/plain; version=0.0.4")
