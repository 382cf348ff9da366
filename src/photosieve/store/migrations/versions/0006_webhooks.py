"""Signed webhooks: each client's callback URL and signing secret, and the delivery outbox.

Revision ID: 0006_webhooks
Revises: 0005_registry
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_webhooks"
down_revision = "0005_registry"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("clients", sa.Column("webhook_url", sa.String(2048), nullable=True))
    op.add_column("clients", sa.Column("webhook_secret", sa.String(128), nullable=True))
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("event_id", sa.String(40), nullable=False, unique=True),
        sa.Column("client_id", sa.Integer(), sa.ForeignKey("clients.id"), nullable=False),
        sa.Column("upload_id", sa.String(32), sa.ForeignKey("uploads.id"), nullable=False),
        sa.Column("decision_id", sa.Integer(), sa.ForeignKey("decisions.id"), nullable=True),
        sa.Column("event_type", sa.String(32), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=False),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.Column("last_attempt_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("delivered_at", sa.DateTime(), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'delivered', 'failed', 'cancelled')",
            name="ck_webhook_deliveries_status",
        ),
    )
    op.create_index(
        "ix_webhook_deliveries_due", "webhook_deliveries", ["status", "next_attempt_at"]
    )
    op.create_index("ix_webhook_deliveries_client_id", "webhook_deliveries", ["client_id"])
    op.create_index("ix_webhook_deliveries_upload_id", "webhook_deliveries", ["upload_id"])


def downgrade() -> None:
    op.drop_table("webhook_deliveries")
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("webhook_secret")
        batch.drop_column("webhook_url")
