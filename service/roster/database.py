"""The roster database: SQLAlchemy 2 models, Alembic upgrades and the roster generation.

The database is the source of truth; the FAISS index is derived from it and follows
``roster_state.generation``. The URL comes from the caller, so PostgreSQL can replace the default
SQLite file without code changes: the only dialect-specific code runs in a connect-event hook.
Nothing here touches a database at import time.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Connection,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    TypeDecorator,
    UniqueConstraint,
    create_engine,
    event,
    make_url,
    select,
    text,
    true,
    update,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
ROSTER_STATE_ID = 1

# Explicit constraint names: Alembic can only alter or drop what it can name, and SQLite and
# PostgreSQL would otherwise invent different names for the same constraint.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend.

    SQLite stores no offset and hands back naive values; this type converts to UTC on the way in,
    refuses naive values (their zone is unknown) and marks values read back as UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: give a timezone-aware one")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of the roster models; ``Base.metadata`` is what migrations must match."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class TimestampMixin:
    """created_at / updated_at, set by the application (not by database functions) in UTC."""

    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class PersonRow(TimestampMixin, Base):
    """Someone who can be recognised; ``external_id`` is the caller's stable id for them."""

    __tablename__ = "people"
    # Ids are never reused (SQLite would reuse the highest after a delete): face ids live on in worker
    # indexes and crop folders are named by person id, so a reused id could speak for someone else.
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    external_id: Mapped[str] = mapped_column(String(128), unique=True)
    name: Mapped[str | None] = mapped_column(String(256))
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # Free-form client metadata. Reassign the whole value to change it: in-place edits of the
    # dict are not tracked.
    attributes: Mapped[Any | None] = mapped_column(JSON)

    faces: Mapped[list[FaceRow]] = relationship(
        back_populates="person", cascade="all, delete-orphan", passive_deletes=True
    )

    def __repr__(self) -> str:
        return f"PersonRow(id={self.id!r}, external_id={self.external_id!r}, name={self.name!r})"


class FaceRow(TimestampMixin, Base):
    """One enrolled face: its encoding under one model, and where it came from."""

    __tablename__ = "faces"
    __table_args__ = (UniqueConstraint("person_id", "photo_sha256"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"), index=True)
    # 128 little-endian float32 (service.roster.codec).
    encoding: Mapped[bytes] = mapped_column(LargeBinary)
    # Encodings of different models are never compared, so every query filters on this.
    model_id: Mapped[str] = mapped_column(String(128), index=True)
    photo_sha256: Mapped[str] = mapped_column(String(64))
    box_x: Mapped[float] = mapped_column(Float)
    box_y: Mapped[float] = mapped_column(Float)
    box_w: Mapped[float] = mapped_column(Float)
    box_h: Mapped[float] = mapped_column(Float)
    # Detection confidence; None when detection was off.
    score: Mapped[float | None] = mapped_column(Float)
    # Where versions before the crops moved into the database (``face_crops``) kept this face's crop, as
    # a path under the data home: read only by ``facerec db import-crops``, written by no one.
    crop_path: Mapped[str | None] = mapped_column(String(512))

    person: Mapped[PersonRow] = relationship(back_populates="faces")

    def __repr__(self) -> str:
        return f"FaceRow(id={self.id!r}, person_id={self.person_id!r}, model_id={self.model_id!r})"


class CropRow(Base):
    """A face's aligned 160x160 crop (PNG), kept so a new model can re-encode the face on any replica.

    A table of its own: the crops are about 100 times the size of the encodings, and scans of ``faces``
    (the index rebuild reads every encoding) must not wade through them.
    """

    __tablename__ = "face_crops"

    face_id: Mapped[int] = mapped_column(ForeignKey("faces.id", ondelete="CASCADE"), primary_key=True,
                                         autoincrement=False)
    png: Mapped[bytes] = mapped_column(LargeBinary)


class AuditRow(Base):
    """One verify or identify decision, appended by the service and never changed (only purged once
    older than the retention)."""

    __tablename__ = "audit_events"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    time: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    endpoint: Mapped[str] = mapped_column(String(32))
    outcome: Mapped[str] = mapped_column(String(16))
    person: Mapped[str | None] = mapped_column(String(128), index=True)
    distance: Mapped[float | None] = mapped_column(Float)
    code: Mapped[str | None] = mapped_column(String(32))
    key_id: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(64))


class RosterState(Base):
    """The single row (id 1) whose generation the derived index follows."""

    __tablename__ = "roster_state"
    __table_args__ = (CheckConstraint(f"id = {ROSTER_STATE_ID}", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    generation: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    # Changed by each restore (migration 0004 says why); None only in a database not yet upgraded.
    epoch: Mapped[str | None] = mapped_column(String(32))


CONNECT_TIMEOUT_SECONDS = 10


def make_engine(url: str) -> Engine:
    """An engine for ``url``; a SQLite file's folder is created, and its connections get WAL,
    enforced foreign keys, a busy timeout and Unicode-aware ``lower()``."""
    _create_sqlite_folder(url)
    # pre_ping: a pooled PostgreSQL connection may have been dropped by a server restart (a SQLite
    # file's cannot be, and the ping was a statement on every request). A connect timeout: an
    # unreachable server must fail a request in seconds, not after the kernel's retries.
    server = make_url(url).get_backend_name() == "postgresql"
    connect_args = {"connect_timeout": CONNECT_TIMEOUT_SECONDS} if server else {}
    engine = create_engine(url, pool_pre_ping=server, connect_args=connect_args)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        if engine.dialect.name == "sqlite":
            _set_sqlite_pragmas(dbapi_connection)

    return engine


def _create_sqlite_folder(url: str) -> None:
    parsed = make_url(url)
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return
    if database.startswith("file:"):  # URI filenames are the caller's business
        return
    Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def _set_sqlite_pragmas(dbapi_connection: Any) -> None:
    # SQLite enforces foreign keys (and so ON DELETE CASCADE) only when asked, per connection;
    # WAL lets readers run while one writer commits; busy_timeout waits for that writer instead
    # of failing at once with "database is locked".
    # SQLite's own lower() folds ASCII only: a search for "émile" would miss "Émile".
    dbapi_connection.create_function("lower", 1, _lower, deterministic=True)
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=5000")
    finally:
        cursor.close()


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def alembic_config(url: str, script_location: Path = MIGRATIONS_DIR) -> AlembicConfig:
    """An Alembic configuration for ``url``, built in code (the project has no alembic.ini)."""
    config = AlembicConfig()
    config.set_main_option("script_location", str(script_location))
    # Config values go through ConfigParser interpolation, where a bare "%" (URL-escaped
    # passwords) is an error.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade_database(
    engine_or_url: Engine | str, revision: str = "head", *, script_location: Path = MIGRATIONS_DIR,
    home: Path | None = None,
) -> None:
    """Apply the Alembic migrations up to ``revision``; a no-op when already there.

    Given an engine, its own connection is used (so in-process and test engines work); given a
    URL, a temporary engine is made and disposed of. ``home``: the data home, for migrations that
    move files kept there into the database.
    """
    engine = make_engine(engine_or_url) if isinstance(engine_or_url, str) else engine_or_url
    try:
        config = alembic_config(engine.url.render_as_string(hide_password=False), script_location)
        with engine.connect() as connection:
            # Not in a transaction: env.py and Alembic commit each step themselves.
            config.attributes["connection"] = connection
            config.attributes["home"] = home
            command.upgrade(config, revision)
    finally:
        if engine is not engine_or_url:
            engine.dispose()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions on ``engine`` whose objects stay readable after commit."""
    return sessionmaker(bind=engine, expire_on_commit=False)


def bump_generation(session: Session) -> int:
    """Add one to the roster generation and return the new value.

    A single UPDATE ... SET generation = generation + 1, so concurrent writers never lose a bump.
    It does not commit: call it in the transaction that makes the change it announces.
    """
    statement = (
        update(RosterState)
        .where(RosterState.id == ROSTER_STATE_ID)
        .values(generation=RosterState.generation + 1, updated_at=utcnow())
        .returning(RosterState.generation)
        # The new value is read from RETURNING; no loaded RosterState object needs syncing.
        .execution_options(synchronize_session=False)
    )
    generation = session.execute(statement).scalar_one_or_none()
    if generation is None:
        raise LookupError("roster_state row missing: run upgrade_database() first")
    return generation


def current_state(session: Session | Connection) -> tuple[int, str]:
    """The roster generation and epoch as the database has them, read together."""
    row = session.execute(
        select(RosterState.generation, RosterState.epoch).where(RosterState.id == ROSTER_STATE_ID)
    ).one_or_none()
    if row is None:
        raise LookupError("roster_state row missing: run upgrade_database() first")
    return row[0], row[1] or ""


def current_generation(session: Session | Connection) -> int:
    """The roster generation as the database has it (in the session's or connection's transaction)."""
    generation = session.execute(
        select(RosterState.generation).where(RosterState.id == ROSTER_STATE_ID)
    ).scalar_one_or_none()
    if generation is None:
        raise LookupError("roster_state row missing: run upgrade_database() first")
    return generation
