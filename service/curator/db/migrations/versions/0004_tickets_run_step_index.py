"""tickets (run_id, step) index: the run's latest ticket without scanning its history

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 20:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # After every update the worker reads the run's latest ticket (its pool size, to score
    # the next pool ahead); without this index that sorted all of the run's tickets.
    op.create_index("ix_tickets_run_step", "tickets", ["run_id", "step"])


def downgrade() -> None:
    op.drop_index("ix_tickets_run_step", table_name="tickets")
