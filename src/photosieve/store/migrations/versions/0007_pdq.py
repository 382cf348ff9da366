"""PDQ hashes: of every upload, in the known-bad bank (beside the pHash), and imported lists.

Bank entries may now have no pHash (imported PDQ lines) and no source upload (imported).

Revision ID: 0007_pdq
Revises: 0006_webhooks
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_pdq"
down_revision = "0006_webhooks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("uploads") as batch:
        batch.add_column(sa.Column("pdq", sa.String(64), nullable=True))
        batch.add_column(sa.Column("pdq_quality", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("match_hash", sa.String(8), nullable=True))
        batch.add_column(sa.Column("matched_entry_id", sa.Integer(), nullable=True))
    # Recreated with AUTOINCREMENT on SQLite: ids are never reused (the PDQ index follows new
    # entries by id).
    with op.batch_alter_table(
        "known_bad_hashes", recreate="auto", table_kwargs={"sqlite_autoincrement": True}
    ) as batch:
        batch.add_column(sa.Column("pdq", sa.String(64), nullable=True))
        batch.add_column(sa.Column("pdq_quality", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("source_list", sa.String(128), nullable=True))
        batch.alter_column("phash", existing_type=sa.String(16), nullable=True)
        batch.alter_column("source_upload_id", existing_type=sa.String(32), nullable=True)
        batch.create_index("ix_known_bad_hashes_pdq", ["pdq"])


def downgrade() -> None:
    # Imported entries (no source upload, no pHash) cannot live in the older schema.
    op.execute("DELETE FROM known_bad_hashes WHERE source_upload_id IS NULL OR phash IS NULL")
    with op.batch_alter_table("known_bad_hashes") as batch:
        batch.drop_index("ix_known_bad_hashes_pdq")
        batch.alter_column("source_upload_id", existing_type=sa.String(32), nullable=False)
        batch.alter_column("phash", existing_type=sa.String(16), nullable=False)
        batch.drop_column("source_list")
        batch.drop_column("pdq_quality")
        batch.drop_column("pdq")
    with op.batch_alter_table("uploads") as batch:
        batch.drop_column("matched_entry_id")
        batch.drop_column("match_hash")
        batch.drop_column("pdq_quality")
        batch.drop_column("pdq")
