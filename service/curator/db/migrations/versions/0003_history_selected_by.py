"""history.selected_by: per-ticket counts of the selected problems' metadata values

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable, no backfill: points recorded before this migration keep NULL and the admin
    # history counts those tickets from their items (the pre-0003 join).
    with op.batch_alter_table("history") as batch:
        batch.add_column(sa.Column("selected_by", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("history") as batch:
        batch.drop_column("selected_by")
