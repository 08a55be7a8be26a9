"""checkpoints.selection: the part of a strategy's state selection reads, stored apart

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 23:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # An API replica loads a new version's selection copy from this column alone (the
    # scorer, not the optimiser state); rows written before it keep the whole state in
    # `blob` and are read as before.
    with op.batch_alter_table("checkpoints") as batch:
        batch.add_column(sa.Column("selection", sa.LargeBinary(), nullable=True))


# The checkpoint codec as it was when this migration was written, frozen here: replaying
# the migration must not change meaning if the live codec (curation/checkpoint.py) does.
def _dumps(state: dict) -> bytes:
    import io

    import torch

    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def _loads(blob: bytes) -> dict:
    import io

    import torch

    return torch.load(io.BytesIO(blob), weights_only=True, map_location="cpu")


def downgrade() -> None:
    # Fold each two-part checkpoint back into one whole state in `blob`.
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT run_id, version, selection, blob FROM checkpoints "
                                "WHERE selection IS NOT NULL")).all()
    for run_id, version, selection, blob in rows:
        whole = _dumps(_loads(bytes(selection)) | _loads(bytes(blob)))
        conn.execute(sa.text("UPDATE checkpoints SET blob = :blob "
                             "WHERE run_id = :run AND version = :version"),
                     {"blob": whole, "run": run_id, "version": version})
    with op.batch_alter_table("checkpoints") as batch:
        batch.drop_column("selection")
