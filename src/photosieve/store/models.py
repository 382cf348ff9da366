"""SQLAlchemy 2 models of the moderation store: uploads, review items, decisions, bank, users,
clients (tenants) with their API keys and webhook, the webhook outbox, reviewer sessions and the
sign-in audit log, the model registry with its shadow scores and audit log.

Every timestamp is stored as naive UTC (`UTCDateTime`) so SQLite and PostgreSQL compare them the
same way in SQL (claim expiry); Python always sees aware UTC datetimes.
"""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> dt.datetime:
    """Now, as an aware UTC datetime."""
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Aware UTC datetimes in Python, naive UTC in the database (same on SQLite and PostgreSQL)."""

    impl = DateTime(timezone=False)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use an aware UTC datetime")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        return None if value is None else value.replace(tzinfo=dt.UTC)


class UploadStatus(enum.StrEnum):
    APPROVED = "approved"
    PENDING_REVIEW = "pending_review"
    REMOVED = "removed"


class UploadReason(enum.StrEnum):
    """Why an upload has its current status."""

    MODEL_BAND = "model_band"  # the certified policy's band for the score
    HASH_MATCH = "hash_match"  # near-match of a known-bad photo
    REVIEWER = "reviewer"  # a person decided (final)


class ItemKind(enum.StrEnum):
    MODEL_BAND = "model_band"  # score fell in the review band
    APPEAL = "appeal"  # the user appealed a removal
    AUDIT = "audit"  # random sample of auto-approved uploads (production recall)
    HASH_MATCH = "hash_match"  # removed by a bank entry no person has confirmed yet


class ItemStatus(enum.StrEnum):
    PENDING = "pending"
    CLAIMED = "claimed"
    DECIDED = "decided"


# Items still in the queue (the predicate of the partial index `ix_review_items_open`).
OPEN_ITEMS = f"status IN ('{ItemStatus.PENDING.value}', '{ItemStatus.CLAIMED.value}')"


class Role(enum.StrEnum):
    REVIEWER = "reviewer"
    ADMIN = "admin"


def _values(kind: type[enum.StrEnum]) -> str:
    return ", ".join(f"'{member.value}'" for member in kind)


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint(f"role IN ({_values(Role)})", name="ck_users_role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Client(Base):
    """A tenant: one forum or site. Its API keys see only its own uploads."""

    __tablename__ = "clients"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Where final decisions on its uploads are POSTed (None: the client polls), and the
    # Standard-Webhooks signing secret (`whsec_…`; kept in clear: signing needs it).
    webhook_url: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    webhook_secret: Mapped[str | None] = mapped_column(String(128), nullable=True)


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"  # waiting for its (next) attempt
    DELIVERED = "delivered"  # the receiver answered 2xx
    FAILED = "failed"  # gave up after the last attempt
    CANCELLED = "cancelled"  # the decision was undone before it was sent


class WebhookDelivery(Base):
    """One event for a client's webhook: the outbox row written with the decision, then the
    delivery log (attempts, last answer, next retry)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        CheckConstraint(
            f"status IN ({_values(DeliveryStatus)})", name="ck_webhook_deliveries_status"
        ),
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(40), unique=True)  # the `webhook-id` header
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"), index=True)
    upload_id: Mapped[str] = mapped_column(ForeignKey("uploads.id"), index=True)
    decision_id: Mapped[int | None] = mapped_column(ForeignKey("decisions.id"), nullable=True)
    event_type: Mapped[str] = mapped_column(String(32))
    payload: Mapped[str] = mapped_column(Text)  # the exact JSON body, signed at each attempt
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    last_status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(500), nullable=True)
    last_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    # Nullable in the schema only (SQLite cannot add a NOT NULL reference); always set by
    # `accounts.create_api_key`, and a key without a client sees no upload.
    client_id: Mapped[int | None] = mapped_column(ForeignKey("clients.id"), nullable=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex of the key
    prefix: Mapped[str] = mapped_column(String(16))  # first characters, to recognise a key
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Upload(Base):
    __tablename__ = "uploads"
    __table_args__ = (
        CheckConstraint(f"status IN ({_values(UploadStatus)})", name="ck_uploads_status"),
        CheckConstraint(f"reason IN ({_values(UploadReason)})", name="ck_uploads_reason"),
        Index("ix_uploads_created_at", "created_at"),
        # One upload per (client, Idempotency-Key): a retried POST cannot make a second row.
        Index("uq_uploads_client_idempotency", "client_id", "idempotency_key", unique=True),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # random, unguessable
    user_id: Mapped[str] = mapped_column(String(128), index=True)
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"), nullable=True)
    # The tenant that sent it (see ApiKey.client_id for why the schema allows NULL).
    client_id: Mapped[int | None] = mapped_column(ForeignKey("clients.id"), nullable=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(128), nullable=True)
    # SHA-256 of (image SHA-256, user_id): a reused key with another body is refused.
    request_fingerprint: Mapped[str | None] = mapped_column(String(64), nullable=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    phash: Mapped[str] = mapped_column(String(16))
    # PDQ hash (64 hex digits) of the decoded photo and its quality (0..100); None before 0007.
    pdq: Mapped[str | None] = mapped_column(String(64), nullable=True)
    pdq_quality: Mapped[int | None] = mapped_column(Integer, nullable=True)
    image_format: Mapped[str] = mapped_column(String(8))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column(Integer)
    score: Mapped[float] = mapped_column(Float)
    model_version: Mapped[str] = mapped_column(String(64))
    model_decision: Mapped[str] = mapped_column(String(16))  # approve | review | remove
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(16))
    final: Mapped[bool] = mapped_column(Boolean, default=False)  # a person decided
    matched_upload_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    match_distance: Mapped[int | None] = mapped_column(Integer, nullable=True)
    match_hash: Mapped[str | None] = mapped_column(String(8), nullable=True)  # "pdq" | "phash"
    # The bank entry it matched (no foreign key: entries reference uploads already).
    matched_entry_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    appealed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    appeal_reason: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    # The probability that this auto-approved upload was drawn for an audit, fixed before its
    # label was known (production recall evidence); None when the model did not approve it.
    audit_probability: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ReviewItem(Base):
    __tablename__ = "review_items"
    __table_args__ = (
        CheckConstraint(f"kind IN ({_values(ItemKind)})", name="ck_review_items_kind"),
        CheckConstraint(f"status IN ({_values(ItemStatus)})", name="ck_review_items_status"),
        Index("ix_review_items_queue", "status", "created_at", "id"),
        # The claim's ORDER BY over open items only: PostgreSQL reads the oldest claimable rows
        # from here instead of sorting every pending item (`queue.candidates_query`).
        Index(
            "ix_review_items_open",
            "created_at",
            "id",
            postgresql_where=text(OPEN_ITEMS),
            sqlite_where=text(OPEN_ITEMS),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    upload_id: Mapped[str] = mapped_column(ForeignKey("uploads.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default=ItemStatus.PENDING.value)
    claimed_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    claim_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # An appeal is never decided by the reviewer whose decision removed the photo.
    recused_reviewer_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)


class ReviewDecision(Base):
    """A person's label for an item: the training labels of the feedback loop."""

    __tablename__ = "decisions"
    __table_args__ = (
        CheckConstraint("label IN ('offensive', 'ok')", name="ck_decisions_label"),
        Index("ix_decisions_decided_at", "decided_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("review_items.id"), index=True)
    upload_id: Mapped[str] = mapped_column(ForeignKey("uploads.id"), index=True)
    label: Mapped[str] = mapped_column(String(16))
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    decided_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    undone: Mapped[bool] = mapped_column(Boolean, default=False)
    undone_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The upload's state before this decision, so an undo restores it exactly.
    previous_status: Mapped[str] = mapped_column(String(16))
    previous_reason: Mapped[str] = mapped_column(String(16))


class KnownBadHash(Base):
    """Hashes of a removed photo (or a line of an imported hash list); uploads near it are
    removed at once.

    An entry has a PDQ hash when its photo's PDQ quality was high enough (or it was imported),
    and a 64-bit pHash when it came from an upload; imported entries have no source upload.
    """

    __tablename__ = "known_bad_hashes"
    # Ids never reused on SQLite either: the PDQ index follows new entries by id.
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    phash: Mapped[str | None] = mapped_column(String(16), index=True, nullable=True)
    pdq: Mapped[str | None] = mapped_column(String(64), index=True, nullable=True)
    pdq_quality: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # The imported list's name (e.g. its file name) for entries that came from one.
    source_list: Mapped[str | None] = mapped_column(String(128), nullable=True)
    source_upload_id: Mapped[str | None] = mapped_column(
        ForeignKey("uploads.id"), index=True, nullable=True
    )
    confirmed: Mapped[bool] = mapped_column(Boolean, default=False)  # a person removed it
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # The reviewer decision that added it (offensive) or switched it off (ok): undo reverts it.
    decision_id: Mapped[int | None] = mapped_column(ForeignKey("decisions.id"), nullable=True)
    deactivated_by: Mapped[int | None] = mapped_column(ForeignKey("decisions.id"), nullable=True)
    added_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class AuthSession(Base):
    """A reviewer's server-side session: the cookie carries only a random token; `id` is its hash.

    Valid while not revoked, before `expires_at` (absolute timeout) and within the idle timeout
    of `last_seen_at`.
    """

    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 hex of the token
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    client_addr: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)


class AuthEvent(Base):
    """One line of the sign-in audit log (attempts, sign-outs, revocations, account changes).

    Login throttling counts `login_failed` rows per username and per client address.
    """

    __tablename__ = "auth_events"
    __table_args__ = (
        Index("ix_auth_events_username_at", "username", "at"),
        Index("ix_auth_events_client_addr_at", "client_addr", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    kind: Mapped[str] = mapped_column(String(32))
    username: Mapped[str] = mapped_column(String(64))  # as typed at sign-in (may not exist)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    client_addr: Mapped[str] = mapped_column(String(64))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    detail: Mapped[str | None] = mapped_column(String(200), nullable=True)


class ModelStatus(enum.StrEnum):
    """Where a registered model version stands (`store.registry`)."""

    CANDIDATE = "candidate"  # registered by `retrain`, not scoring anything
    SHADOW = "shadow"  # scores every upload beside the live model, never acts
    LIVE = "live"  # decides uploads (exactly one row at a time)
    RETIRED = "retired"  # was live or shadow before; a rollback target if it was live


class ModelVersion(Base):
    """A registered model bundle (stored immutably under `<workdir>/models/<version>/`)."""

    __tablename__ = "model_versions"
    __table_args__ = (
        CheckConstraint(f"status IN ({_values(ModelStatus)})", name="ck_model_versions_status"),
        Index("ix_model_versions_status", "status"),
        # At most one live model, whatever two admins do at once.
        Index(
            "uq_model_versions_live",
            "status",
            unique=True,
            sqlite_where=text("status = 'live'"),
            postgresql_where=text("status = 'live'"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[str] = mapped_column(String(64), unique=True)
    parent_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    bundle_path: Mapped[str] = mapped_column(String(1000))
    # The held-out split manifest (its calibration rows are the gate's labelled data).
    manifest_path: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    data_fingerprint: Mapped[str] = mapped_column(String(64), default="")
    # JSON: calibration certificate, training metrics, the last gate result.
    evidence: Mapped[str] = mapped_column(Text, default="{}")
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    promoted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    promoted_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    override: Mapped[bool] = mapped_column(Boolean, default=False)


class ShadowScore(Base):
    """A shadow model's score of an upload (recorded, never acted on)."""

    __tablename__ = "shadow_scores"

    upload_id: Mapped[str] = mapped_column(ForeignKey("uploads.id"), primary_key=True)
    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    score: Mapped[float] = mapped_column(Float)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ModelEvent(Base):
    """The model audit log: registrations, shadowing, promotions (gate or override), rollbacks."""

    __tablename__ = "model_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    kind: Mapped[str] = mapped_column(String(32))
    version: Mapped[str] = mapped_column(String(64), index=True)
    previous_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    actor: Mapped[str] = mapped_column(String(64))
    override: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str | None] = mapped_column(String(1000), nullable=True)
