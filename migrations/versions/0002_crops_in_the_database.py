"""Face crops move into the database, so every replica can re-encode every face.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23

The aligned 160x160 crops kept for re-encoding were files under ``<home>/crops/``, named by
``faces.crop_path``: a replica on another host could not reach them. They become rows of
``face_crops`` (PNG bytes, deleted with their face). When the migration runs with the data home known
(``upgrade_database(..., home=...)``, as every facerec command does), the files found there are copied
in; crops kept on other hosts are copied by running ``facerec db import-crops`` there.

``faces.crop_path`` stays, unread by this version and written by none: a replica still running the
previous version keeps working on the migrated database until it is upgraded too. The files are left
on disk; delete ``<home>/crops/`` once ``import-crops`` has run on every host. Downgrading drops
``face_crops``: crops of faces enrolled since the upgrade are lost (their faces keep their encodings).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import sqlalchemy as sa
from alembic import context, op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")
BATCH = 500


def upgrade() -> None:
    crops = op.create_table(
        "face_crops",
        sa.Column("face_id", sa.Integer(), nullable=False),
        sa.Column("png", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["face_id"], ["faces.id"], name=op.f("fk_face_crops_face_id_faces"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("face_id", name=op.f("pk_face_crops")),
    )
    faces = sa.table("faces", sa.column("id", sa.Integer), sa.column("crop_path", sa.String))
    rows = op.get_bind().execute(sa.select(faces.c.id, faces.c.crop_path).where(faces.c.crop_path.is_not(None))).all()
    if not rows:
        return
    home = context.config.attributes.get("home")
    if home is None:
        log.warning("%d faces keep their crops as files under a data home this migration was not told of: run "
                    "`facerec db import-crops` with that home to copy them into the database", len(rows))
        return
    copied = missing = 0
    for start in range(0, len(rows), BATCH):
        batch = []
        for face_id, crop_path in rows[start:start + BATCH]:
            try:
                batch.append({"face_id": face_id, "png": (Path(home) / crop_path).read_bytes()})
            except OSError:
                missing += 1
        if batch:
            op.get_bind().execute(crops.insert(), batch)
            copied += len(batch)
    log.warning("copied %d face crops from %s into the database (%d not found there: if they are on another "
                "host, run `facerec db import-crops` there)", copied, Path(home) / "crops", missing)


def downgrade() -> None:
    op.drop_table("face_crops")
