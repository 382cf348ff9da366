"""Production evidence: the audit inclusion probability of every model-approved upload.

Revision ID: 0004_evidence
Revises: 0003_tenants
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_evidence"
down_revision = "0003_tenants"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("uploads", sa.Column("audit_probability", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("uploads") as batch:
        batch.drop_column("audit_probability")
