"""Tenants, idempotency and appeal notes: clients table; client_id on keys and uploads.

Every existing API key and upload moves to one client named "default", so nothing already
stored changes hands. Uploads also get `idempotency_key` + `request_fingerprint` (unique per
client), the user's `appeal_reason`; review items get `recused_reviewer_id`.

The new reference columns are added with a plain `ADD COLUMN … REFERENCES` (valid on SQLite and
PostgreSQL alike) and stay nullable: SQLite cannot add a NOT NULL reference without copying the
table, which its foreign keys forbid inside the migration's transaction. The application always
sets them, and a NULL client matches no API key.

Revision ID: 0003_tenants
Revises: 0002_sessions
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from alembic import op

revision = "0003_tenants"
down_revision = "0002_sessions"
branch_labels = None
depends_on = None

DEFAULT_CLIENT = "default"


def _add_reference(table: str, column: str, target: str) -> None:
    op.execute(f"ALTER TABLE {table} ADD COLUMN {column} INTEGER REFERENCES {target} (id)")


def upgrade() -> None:
    clients = op.create_table(
        "clients",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    assert clients is not None
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)  # naive UTC, as UTCDateTime stores it
    op.bulk_insert(clients, [{"name": DEFAULT_CLIENT, "active": True, "created_at": now}])
    _add_reference("api_keys", "client_id", "clients")
    _add_reference("uploads", "client_id", "clients")
    _add_reference("review_items", "recused_reviewer_id", "users")
    op.add_column("uploads", sa.Column("idempotency_key", sa.String(128), nullable=True))
    op.add_column("uploads", sa.Column("request_fingerprint", sa.String(64), nullable=True))
    op.add_column("uploads", sa.Column("appeal_reason", sa.String(1000), nullable=True))
    default_id = f"(SELECT id FROM clients WHERE name = '{DEFAULT_CLIENT}')"
    op.execute(f"UPDATE api_keys SET client_id = {default_id}")
    op.execute(f"UPDATE uploads SET client_id = {default_id}")
    op.create_index(
        "uq_uploads_client_idempotency", "uploads", ["client_id", "idempotency_key"], unique=True
    )


def downgrade() -> None:
    op.drop_index("uq_uploads_client_idempotency", table_name="uploads")
    with op.batch_alter_table("review_items") as batch:
        batch.drop_column("recused_reviewer_id")
    with op.batch_alter_table("uploads") as batch:
        for column in ("appeal_reason", "request_fingerprint", "idempotency_key", "client_id"):
            batch.drop_column(column)
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("client_id")
    op.drop_table("clients")
