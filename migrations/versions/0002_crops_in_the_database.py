"""Face crops move into the database, so every replica can re-encode every face.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23

The aligned 160x160 crops kept for re-encoding were files under ``<home>/crops/``, named by
``faces.crop_path``: a replica on another host could not reach them. They become rows of
``face_crops`` (PNG bytes, deleted with their face). When the migration runs with the data home known
(``upgrade_database(..., home=...)``, as every facerec command does), the files found there are copied
in; a face whose file is missing keeps no crop (``reindex --reembed`` reports it). The files are left
on disk: delete ``<home>/crops/`` once every replica runs this version.
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
    home = context.config.attributes.get("home")
    if home is not None:
        _copy_crop_files(Path(home), crops)
    with op.batch_alter_table("faces") as batch:
        batch.drop_column("crop_path")


def _copy_crop_files(home: Path, crops: sa.Table) -> None:
    bind = op.get_bind()
    faces = sa.table("faces", sa.column("id", sa.Integer), sa.column("crop_path", sa.String))
    rows = bind.execute(sa.select(faces.c.id, faces.c.crop_path).where(faces.c.crop_path.is_not(None))).all()
    copied = missing = 0
    for start in range(0, len(rows), BATCH):
        batch = []
        for face_id, crop_path in rows[start:start + BATCH]:
            try:
                batch.append({"face_id": face_id, "png": (home / crop_path).read_bytes()})
            except OSError:
                missing += 1
        if batch:
            bind.execute(crops.insert(), batch)
            copied += len(batch)
    if rows:
        log.warning("moved %d face crops from %s into the database (%d files missing); the folder is no "
                    "longer read and can be deleted", copied, home / "crops", missing)


def downgrade() -> None:
    with op.batch_alter_table("faces") as batch:
        batch.add_column(sa.Column("crop_path", sa.String(length=512), nullable=True))
    op.drop_table("face_crops")
