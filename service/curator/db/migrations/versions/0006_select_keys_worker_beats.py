"""tickets.idempotency_key (a retried select returns its ticket) and worker heartbeats

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 17:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable, no backfill: a select without a key issues a new ticket, as before. The
    # unique index admits any number of NULLs (PostgreSQL and SQLite alike).
    with op.batch_alter_table("tickets") as batch:
        batch.add_column(sa.Column("idempotency_key", sa.String(64), nullable=True))
    op.create_index("ux_tickets_run_idempotency_key", "tickets",
                    ["run_id", "idempotency_key"], unique=True)
    # One row per worker process, refreshed every few seconds: /readyz and /metrics see a
    # worker that runs as its own process (compose's `worker`) through the database.
    op.create_table(
        "worker_beats",
        sa.Column("worker_id", sa.String(64), primary_key=True),
        sa.Column("host", sa.String(200), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("beat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("applied", sa.BigInteger(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_table("worker_beats")
    op.drop_index("ux_tickets_run_idempotency_key", table_name="tickets")
    with op.batch_alter_table("tickets") as batch:
        batch.drop_column("idempotency_key")
