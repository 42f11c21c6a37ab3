"""The roster's epoch: a new one each time a backup is restored, so indexes built before know.

An index follows the database by generation and catches up by face id, which is sound while a face id
always means the same face. A restore may bring back another database's faces under ids this one
used; the epoch changes with it, and an index of another epoch is rebuilt rather than caught up.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

import uuid
from typing import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("roster_state") as batch:
        batch.add_column(sa.Column("epoch", sa.String(length=32), nullable=True))
    op.execute(sa.text("UPDATE roster_state SET epoch = :epoch").bindparams(epoch=uuid.uuid4().hex))


def downgrade() -> None:
    with op.batch_alter_table("roster_state") as batch:
        batch.drop_column("epoch")
