"""Backups of the roster: one SQLite file holding every table (people, faces, their crops, the audit),
whatever the database, and restoring one into any database.

The file is an ordinary roster database at the schema of the version that wrote it, marked as a
backup by SQLite's application id, so a backup of a PostgreSQL roster can be restored into SQLite and
the other way round (moving a single-host service onto PostgreSQL is a backup and a restore).
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import uuid
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, delete, func, select, text, update

from service.errors import FacerecError
from service.roster.database import (
    ROSTER_STATE_ID, AuditRow, CropRow, FaceRow, PersonRow, RosterState, alembic_config, current_state, make_engine,
    upgrade_database, utcnow,
)

APPLICATION_ID = 0x46524543  # "FREC": what marks a SQLite file as a facerec backup
# Parents before children, so each row's foreign keys exist when it is written.
TABLES = (PersonRow.__table__, FaceRow.__table__, CropRow.__table__, AuditRow.__table__)
CHUNK = 500  # rows per read and write: crops are ~30 KB each, so a chunk stays a few MB

Progress = Callable[[int], object]


@dataclass(frozen=True)
class Contents:
    """How many rows of each table a backup holds, and the roster state it was taken at."""

    people: int
    faces: int
    crops: int
    audit_events: int
    generation: int
    revision: str


class BackupError(FacerecError):
    """A backup file that cannot be written or read as one."""


def write_backup(engine: Engine, target: Path, progress: Progress | None = None) -> Contents:
    """A consistent copy of the roster behind ``engine`` at ``target`` (a new file), taken while the
    service runs: SQLite's online backup for a SQLite roster, one snapshot transaction otherwise.
    The file appears only once complete."""
    target = Path(target)
    if target.exists():
        raise BackupError(f"{target} exists: give a new file")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    os.close(fd)
    partial = Path(partial)
    try:
        if engine.dialect.name == "sqlite":
            with engine.connect() as connection, closing(sqlite3.connect(partial)) as copy:
                connection.connection.dbapi_connection.backup(copy)
        else:
            _copy_from_server(engine, partial, progress)
        with closing(sqlite3.connect(partial)) as copy:
            copy.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            copy.execute("PRAGMA journal_mode = DELETE")  # one self-contained file, no -wal beside it
            copy.commit()
        contents = read_contents(partial)
        os.replace(partial, target)
        return contents
    finally:
        partial.unlink(missing_ok=True)


def _copy_from_server(engine: Engine, partial: Path, progress: Progress | None) -> None:
    """Rows of every table, read in one repeatable-read snapshot, into a new SQLite roster."""
    partial.unlink()
    copy = make_engine(f"sqlite:///{partial}")
    try:
        with engine.connect() as source:
            source = source.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            with source.begin():
                revision = MigrationContext.configure(source).get_current_revision()
                upgrade_database(copy, revision)  # the copy's schema is the source's, not this version's head
                with copy.begin() as target:
                    for table in TABLES:
                        _copy_table(source, target, table, progress)
                    generation, epoch = current_state(source)
                    target.execute(update(RosterState).where(RosterState.id == ROSTER_STATE_ID)
                                   .values(generation=generation, epoch=epoch or None))
    finally:
        copy.dispose()


def _copy_table(source: Connection, target: Connection, table, progress: Progress | None) -> int:
    copied = 0
    rows = source.execution_options(stream_results=True, yield_per=CHUNK).execute(
        select(table).order_by(*table.primary_key.columns))
    for chunk in rows.partitions(CHUNK):
        target.execute(table.insert(), [dict(row._mapping) for row in chunk])
        copied += len(chunk)
        if progress:
            progress(len(chunk))
    return copied


def read_contents(path: Path) -> Contents:
    """What the backup at ``path`` holds; BackupError if it is not a facerec backup (or roster file)."""
    path = Path(path)
    if not path.is_file():
        raise BackupError(f"{path}: no such file")
    with open(path, "rb") as file:
        if file.read(16) != b"SQLite format 3\x00":
            raise BackupError(f"{path} is not a facerec backup (not a SQLite file)")
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            names = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not {"alembic_version", "roster_state", "people", "faces"} <= names:
                raise BackupError(f"{path} is not a facerec backup (it lacks the roster's tables)")
            revision = db.execute("SELECT version_num FROM alembic_version").fetchone()
            generation = db.execute("SELECT generation FROM roster_state").fetchone()
            # Tables a backup of an older version lacks hold nothing.
            counts = [db.execute(f"SELECT count(*) FROM {table.name}").fetchone()[0] if table.name in names else 0
                      for table in TABLES]
    except sqlite3.Error as exc:
        raise BackupError(f"{path} is not a facerec backup ({exc})") from None
    if revision is None or generation is None:
        raise BackupError(f"{path} is not a facerec backup (no schema revision or roster state)")
    return Contents(*counts, generation=generation[0], revision=revision[0])


def restore_backup(engine: Engine, source: Path, replace: bool = False, progress: Progress | None = None) -> Contents:
    """Make the roster behind ``engine`` what the backup at ``source`` holds, in one transaction.

    Refused when the roster holds anything and ``replace`` is not given. A backup of an older schema is
    upgraded on a private copy first; one of a newer version is refused. The roster starts a new epoch,
    so every index (this host's and other replicas') rebuilds instead of trusting ids it held.
    """
    contents = read_contents(source)
    known = {script.revision for script in ScriptDirectory.from_config(alembic_config("sqlite://")).walk_revisions()}
    if contents.revision not in known:
        raise BackupError(f"{source} was written by a newer version (schema {contents.revision}): "
                          "restore it with that version or a later one")
    with tempfile.TemporaryDirectory(prefix="facerec-restore-") as scratch:
        copy_path = Path(scratch) / "backup.db"
        with closing(sqlite3.connect(f"file:{Path(source)}?mode=ro", uri=True)) as original, \
                closing(sqlite3.connect(copy_path)) as copy:
            original.backup(copy)
        backup = make_engine(f"sqlite:///{copy_path}")
        try:
            upgrade_database(backup)
            with backup.connect() as reader, engine.begin() as target:
                _check_replaceable(target, replace)
                for table in reversed(TABLES):
                    target.execute(delete(table))
                for table in TABLES:
                    _copy_table(reader, target, table, progress)
                _continue_ids(target)
                generation, _ = current_state(target)
                target.execute(update(RosterState).where(RosterState.id == ROSTER_STATE_ID).values(
                    generation=max(generation, contents.generation) + 1, epoch=uuid.uuid4().hex, updated_at=utcnow()))
        finally:
            backup.dispose()
    return contents


def _check_replaceable(target: Connection, replace: bool) -> None:
    people = target.scalar(select(func.count()).select_from(PersonRow)) or 0
    events = target.scalar(select(func.count()).select_from(AuditRow)) or 0
    if (people or events) and not replace:
        raise BackupError(f"the roster holds {people} people and {events} audit events: "
                          "give --replace to replace them with the backup")


def _continue_ids(target: Connection) -> None:
    """New rows after a restore get ids above every restored one (and above any the database had
    handed out before: ids are never reused). SQLite's AUTOINCREMENT keeps that by itself."""
    if target.dialect.name != "postgresql":
        return
    for table in (PersonRow.__table__, FaceRow.__table__, AuditRow.__table__):
        sequence = target.scalar(text(f"SELECT pg_get_serial_sequence('{table.name}', 'id')"))
        last, called = target.execute(text(f"SELECT last_value, is_called FROM {sequence}")).one()
        highest = max(target.scalar(select(func.max(table.c.id))) or 0, last if called else 0)
        if highest:
            target.execute(text("SELECT setval(:sequence, :value, true)"), {"sequence": sequence, "value": highest})
