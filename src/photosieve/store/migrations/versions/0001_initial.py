"""Initial schema: users, api_keys, uploads, review_items, decisions, known_bad_hashes.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

UPLOAD_STATUS = "'approved', 'pending_review', 'removed'"
UPLOAD_REASON = "'model_band', 'hash_match', 'reviewer'"
ITEM_KIND = "'model_band', 'appeal', 'audit', 'hash_match'"
ITEM_STATUS = "'pending', 'claimed', 'decided'"


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("username", sa.String(64), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(256), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint("role IN ('reviewer', 'admin')", name="ck_users_role"),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
    )
    op.create_table(
        "uploads",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("api_key_id", sa.Integer(), sa.ForeignKey("api_keys.id"), nullable=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("phash", sa.String(16), nullable=False),
        sa.Column("image_format", sa.String(8), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("model_decision", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("final", sa.Boolean(), nullable=False),
        sa.Column("matched_upload_id", sa.String(32), nullable=True),
        sa.Column("match_distance", sa.Integer(), nullable=True),
        sa.Column("appealed_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint(f"status IN ({UPLOAD_STATUS})", name="ck_uploads_status"),
        sa.CheckConstraint(f"reason IN ({UPLOAD_REASON})", name="ck_uploads_reason"),
    )
    op.create_index("ix_uploads_created_at", "uploads", ["created_at"])
    op.create_index("ix_uploads_user_id", "uploads", ["user_id"])
    op.create_index("ix_uploads_sha256", "uploads", ["sha256"])
    op.create_table(
        "review_items",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("upload_id", sa.String(32), sa.ForeignKey("uploads.id"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("claimed_by", sa.Integer(), sa.ForeignKey("users.id"), nullable=True),
        sa.Column("claim_expires_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("decided_at", sa.DateTime(), nullable=True),
        sa.CheckConstraint(f"kind IN ({ITEM_KIND})", name="ck_review_items_kind"),
        sa.CheckConstraint(f"status IN ({ITEM_STATUS})", name="ck_review_items_status"),
    )
    op.create_index("ix_review_items_queue", "review_items", ["status", "created_at", "id"])
    op.create_index("ix_review_items_upload_id", "review_items", ["upload_id"])
    op.create_table(
        "decisions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("item_id", sa.Integer(), sa.ForeignKey("review_items.id"), nullable=False),
        sa.Column("upload_id", sa.String(32), sa.ForeignKey("uploads.id"), nullable=False),
        sa.Column("label", sa.String(16), nullable=False),
        sa.Column("reviewer_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("decided_at", sa.DateTime(), nullable=False),
        sa.Column("undone", sa.Boolean(), nullable=False),
        sa.Column("undone_at", sa.DateTime(), nullable=True),
        sa.Column("previous_status", sa.String(16), nullable=False),
        sa.Column("previous_reason", sa.String(16), nullable=False),
        sa.CheckConstraint("label IN ('offensive', 'ok')", name="ck_decisions_label"),
    )
    op.create_index("ix_decisions_decided_at", "decisions", ["decided_at"])
    op.create_index("ix_decisions_item_id", "decisions", ["item_id"])
    op.create_index("ix_decisions_upload_id", "decisions", ["upload_id"])
    op.create_index("ix_decisions_reviewer_id", "decisions", ["reviewer_id"])
    op.create_table(
        "known_bad_hashes",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("phash", sa.String(16), nullable=False),
        sa.Column("source_upload_id", sa.String(32), sa.ForeignKey("uploads.id"), nullable=False),
        sa.Column("confirmed", sa.Boolean(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("decision_id", sa.Integer(), sa.ForeignKey("decisions.id"), nullable=True),
        sa.Column("deactivated_by", sa.Integer(), sa.ForeignKey("decisions.id"), nullable=True),
        sa.Column("added_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_known_bad_hashes_phash", "known_bad_hashes", ["phash"])
    op.create_index(
        "ix_known_bad_hashes_source_upload_id", "known_bad_hashes", ["source_upload_id"]
    )


def downgrade() -> None:
    for table in ("known_bad_hashes", "decisions", "review_items", "uploads", "api_keys", "users"):
        op.drop_table(table)
