"""Model registry: registered versions, shadow scores and the model audit log.

Revision ID: 0005_registry
Revises: 0004_evidence
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_registry"
down_revision = "0004_evidence"
branch_labels = None
depends_on = None

STATUSES = "'candidate', 'shadow', 'live', 'retired'"


def upgrade() -> None:
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("version", sa.String(64), nullable=False, unique=True),
        sa.Column("parent_version", sa.String(64), nullable=True),
        sa.Column("bundle_path", sa.String(1000), nullable=False),
        sa.Column("manifest_path", sa.String(1000), nullable=True),
        sa.Column("data_fingerprint", sa.String(64), nullable=False),
        sa.Column("evidence", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("promoted_at", sa.DateTime(), nullable=True),
        sa.Column("promoted_by", sa.String(64), nullable=True),
        sa.Column("override", sa.Boolean(), nullable=False),
        sa.CheckConstraint(f"status IN ({STATUSES})", name="ck_model_versions_status"),
    )
    op.create_index("ix_model_versions_status", "model_versions", ["status"])
    op.create_index(
        "uq_model_versions_live",
        "model_versions",
        ["status"],
        unique=True,
        sqlite_where=sa.text("status = 'live'"),
        postgresql_where=sa.text("status = 'live'"),
    )
    op.create_table(
        "shadow_scores",
        sa.Column("upload_id", sa.String(32), sa.ForeignKey("uploads.id"), primary_key=True),
        sa.Column("version", sa.String(64), primary_key=True),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "model_events",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("previous_version", sa.String(64), nullable=True),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("override", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.String(1000), nullable=True),
    )
    op.create_index("ix_model_events_version", "model_events", ["version"])


def downgrade() -> None:
    op.drop_index("ix_model_events_version", "model_events")
    op.drop_table("model_events")
    op.drop_table("shadow_scores")
    op.drop_index("uq_model_versions_live", "model_versions")
    op.drop_index("ix_model_versions_status", "model_versions")
    op.drop_table("model_versions")
