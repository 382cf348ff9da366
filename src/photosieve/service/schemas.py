"""Pydantic schemas of the HTTP API: a family per resource (`UploadPublic`, `ReviewItemPublic`)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, Field

from photosieve.config import CERTIFY
from photosieve.service.hygiene import SingleLine, Text

UploadDecision = Literal["approved", "pending_review", "removed"]


class ErrorDetail(BaseModel):
    reason: str = Field(description="short machine-readable code, e.g. not_an_image")
    message: str = Field(description="what went wrong and what to do about it")
    errors: list[dict[str, Any]] | None = Field(
        default=None, description="invalid_request: each field's problem (loc, msg, type)"
    )


class ErrorResponse(BaseModel):
    detail: ErrorDetail


class HashMatchPublic(BaseModel):
    upload_id: str | None = Field(
        description="the removed upload this photo near-matches (None: an imported hash list)"
    )
    distance: int = Field(description="differing bits of the matching hash")
    hash: Literal["pdq", "phash"] = Field(
        default="phash", description="which hash matched: 256-bit PDQ or 64-bit pHash"
    )


class UploadPublic(BaseModel):
    """An upload's moderation state as the forum sees it."""

    id: str
    user_id: str
    decision: UploadDecision
    reason: Literal["model_band", "hash_match", "reviewer"]
    final: bool = Field(
        description="a person decided; only an appeal of a reviewer's removal (once) follows"
    )
    score: float
    model_version: str
    hash_match: HashMatchPublic | None = None
    appealed: bool = False
    appeal_reason: str | None = None
    created_at: dt.datetime
    updated_at: dt.datetime


class UploadCreated(UploadPublic):
    queued_as: str | None = Field(default=None, description="review queue kind, if queued")


class AppealRequest(BaseModel):
    """The user's side of an appeal (optional; shown to the reviewer who decides it)."""

    reason: Text | None = Field(default=None, max_length=1000)


class ClaimRequest(BaseModel):
    limit: int = Field(default=12, ge=1, le=200)


class ReviewItemPublic(BaseModel):
    id: int
    upload_id: str
    kind: Literal["model_band", "appeal", "audit", "hash_match"]
    status: str
    score: float
    model_decision: str
    model_version: str
    upload_status: UploadDecision
    reason_detail: str
    appeal_reason: str | None = Field(default=None, description="the user's words, if any")
    match_distance: int | None = None
    match_hash: Literal["pdq", "phash"] | None = Field(
        default=None, description="the hash the distance is of: PDQ (256 bits) or pHash (64)"
    )
    image_url: str
    created_at: dt.datetime
    uploaded_at: dt.datetime
    claim_expires_at: dt.datetime | None = None


class ClaimResponse(BaseModel):
    items: list[ReviewItemPublic]
    queue_depth: int = Field(description="open items left in the queue, all kinds")


class DecisionRequest(BaseModel):
    label: Literal["offensive", "ok"]


class DecisionPublic(BaseModel):
    id: int
    decision_id: int
    item_id: int
    upload_id: str
    label: Literal["offensive", "ok"]
    reviewer: str
    decided_at: dt.datetime
    undone: bool
    undo_until: dt.datetime
    upload_status: UploadDecision
    queue_depth: int | None = None


class HistoryEntry(BaseModel):
    decision_id: int
    item_id: int
    upload_id: str
    kind: str
    label: Literal["offensive", "ok"]
    reviewer: str
    decided_at: dt.datetime
    undone: bool
    score: float
    image_url: str


class HistoryResponse(BaseModel):
    items: list[HistoryEntry]


class ProductionRecall(BaseModel):
    """The live model's recall certified on production: census of the review band + audits."""

    model_version: str
    threshold: float = Field(description="the live approve threshold (score < threshold)")
    confidence: float
    photos: int = Field(description="model-decided uploads with evidence")
    census_labelled: int = Field(description="review-band uploads a reviewer decided")
    audits_labelled: int = Field(description="auto-approved uploads an audit decided")
    caught: int = Field(description="labelled offensive uploads at or above the threshold")
    audited_misses: int = Field(description="offensive uploads found by audits")
    misses_upper_bound: int = Field(description="exact upper bound on all misses")
    recall_lower_bound: float = Field(description="exact bound, valid for this look")
    anytime_recall_lower_bound: float = Field(description="valid at every look at once")


class DriftPublic(BaseModel):
    """The live model against its calibration evidence (`policy.drift`)."""

    available: bool = Field(description="false when the bundle carries no calibration reference")
    recertification_needed: bool
    reasons: list[str] = Field(description="why the alarm is raised (empty: no alarm)")
    uploads: int = Field(description="latest uploads of the live model compared")
    psi: float | None = Field(description="population stability index of the scores")
    psi_limit: float | None
    bands_live: dict[str, float]
    bands_expected: dict[str, float]
    band_p_value: float | None = Field(description="χ² test of the band shares")
    recall_upper_bound: float | None = Field(description="from the census and audits")
    target_recall: float | None
    fail_safe_approve_below: float | None = Field(
        description="while raised: uploads are approved only below this score"
    )
    note: str


class WebhookDeliveryPublic(BaseModel):
    event_id: str = Field(description="the webhook-id header; the same on every retry")
    client: str
    upload_id: str
    event_type: str
    status: Literal["pending", "delivered", "failed", "cancelled"]
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: dt.datetime | None = Field(description="when pending")
    created_at: dt.datetime
    delivered_at: dt.datetime | None


class StatsResponse(BaseModel):
    since: dt.datetime = Field(description="start of the UTC day the counts cover")
    queue_depth: dict[str, int]
    queue_total: int
    uploads_today: dict[str, int]
    decisions_today: dict[str, int]
    appeals_today: int
    audits_decided: int
    audits_offensive: int
    known_bad_hashes: int
    reviewers_active_today: int
    production_recall: ProductionRecall | None = None
    recertification_needed: bool = False
    drift: DriftPublic | None = None


class LoginRequest(BaseModel):
    username: SingleLine = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class UserPublic(BaseModel):
    id: int
    username: str
    role: Literal["reviewer", "admin"]
    csrf_token: str = Field(description="send as X-CSRF-Token on review API writes")


class SignOutEverywhereResponse(BaseModel):
    user_id: int
    username: str
    revoked_sessions: int = Field(description="sessions that stopped working")
    released_items: int = Field(description="claimed review items put back in the queue")


class Health(BaseModel):
    """Liveness: the process is up."""

    status: Literal["ok"]
    model_version: str


class ReadinessCheck(BaseModel):
    ok: bool
    detail: str


class Readiness(BaseModel):
    """Readiness: each check (`database`, `image_store`, `model`) and the verdict."""

    status: Literal["ready", "not_ready"]
    checks: dict[str, ReadinessCheck]


# --- model registry (admins) ------------------------------------------------------------------


class ModelVersionPublic(BaseModel):
    version: str
    status: Literal["candidate", "shadow", "live", "retired"]
    parent_version: str | None
    data_fingerprint: str
    created_at: dt.datetime
    promoted_at: dt.datetime | None
    promoted_by: str | None
    override: bool = Field(description="made live by an admin over the gate's refusal")


class ModelEventPublic(BaseModel):
    at: dt.datetime
    kind: Literal["registered", "shadow", "promoted", "rolled_back"]
    version: str
    previous_version: str | None
    actor: str
    override: bool
    reason: str | None


class ModelList(BaseModel):
    live: str | None
    shadow: str | None
    versions: list[ModelVersionPublic]
    events: list[ModelEventPublic] = Field(description="the model audit log, newest first")


class PromoteRequest(BaseModel):
    override: bool = Field(default=False, description="promote even if the gate refuses")
    reason: Text | None = Field(default=None, max_length=1000, description="needed to override")
    target_recall: float = Field(default=CERTIFY.target_recall, gt=0.0, lt=1.0)
    confidence: float = Field(default=CERTIFY.confidence, gt=0.0, lt=1.0)
    tolerance: float = Field(default=0.0, ge=0.0, le=1.0)


class GateCheckPublic(BaseModel):
    source: Literal["held_out", "production"]
    photos: int
    positives: int
    positives_required: int
    recall_lower_bound: float
    certified: bool
    candidate_review_rate: float
    live_review_rate: float


class PromotionPublic(BaseModel):
    version: str
    promoted: bool
    override: bool
    passed: bool = Field(description="the gate's own verdict")
    reasons: list[str]
    messages: list[str]
    checks: list[GateCheckPublic]


class RollbackRequest(BaseModel):
    version: SingleLine | None = Field(
        default=None, max_length=64, description="default: the version live before the current"
    )
