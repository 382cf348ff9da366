"""The review queue at scale: a partial index over open items in claim order.

`queue.claim` asks for the oldest pending (or expired) items; with only
`ix_review_items_queue (status, created_at, id)` PostgreSQL sorted every pending row for each
claim (190 ms at 100k pending). This index holds only pending and claimed rows, ordered as the
claim reads them, so a claim reads its first rows (`bench/queue_scale.py`).

Revision ID: 0008_queue_index
Revises: 0007_pdq
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_queue_index"
down_revision = "0007_pdq"
branch_labels = None
depends_on = None

OPEN_ITEMS = "status IN ('pending', 'claimed')"


def upgrade() -> None:
    op.create_index(
        "ix_review_items_open",
        "review_items",
        ["created_at", "id"],
        postgresql_where=sa.text(OPEN_ITEMS),
        sqlite_where=sa.text(OPEN_ITEMS),
    )


def downgrade() -> None:
    op.drop_index("ix_review_items_open", table_name="review_items")
