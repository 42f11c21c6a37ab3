"""The roster database: migrations match the ORM, constraints, the generation, on a real SQLite file and
on a real PostgreSQL server; SQLite's own connection set-up; the encoding codec."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, delete, func, inspect, select
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session, sessionmaker

from service.roster.codec import encoding_from_bytes, encoding_to_bytes, encodings_from_bytes
from service.roster.database import (
    MIGRATIONS_DIR,
    Base,
    FaceRow,
    PersonRow,
    alembic_config,
    bump_generation,
    current_generation,
    make_engine,
    session_factory,
    upgrade_database,
)

SHA_A = "a" * 64
SHA_B = "b" * 64


def sqlite_url(home: Path) -> str:
    """The URL Config.database gives for a data home with no database_url set."""
    return f"sqlite:///{Path(home).resolve() / 'facerec.db'}"


@pytest.fixture
def engine(tmp_path: Path, database_url: str) -> Engine:
    """A migrated database: a SQLite file in a temporary data home, or a fresh PostgreSQL database."""
    engine = make_engine(database_url or sqlite_url(tmp_path))
    upgrade_database(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Engine:
    """A migrated SQLite file, for what is SQLite's own."""
    engine = make_engine(sqlite_url(tmp_path))
    upgrade_database(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return session_factory(engine)


def _face(sha: str = SHA_A, **fields) -> FaceRow:
    values = dict(encoding=encoding_to_bytes(np.zeros(128)), model_id="test-model", photo_sha256=sha,
                  box_x=1.0, box_y=2.0, box_w=30.0, box_h=40.0)
    return FaceRow(**(values | fields))


def _count(session: Session, model: type[Base]) -> int:
    return session.scalar(select(func.count()).select_from(model))


def _person_with_faces(sessions: sessionmaker[Session], *shas: str) -> int:
    with sessions.begin() as session:
        person = PersonRow(external_id="E001", name="Younes", faces=[_face(sha) for sha in shas])
        session.add(person)
    return person.id


# --- migrations -------------------------------------------------------------------------------


def test_migrations_match_the_orm(engine: Engine) -> None:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_server_default": True})
        assert compare_metadata(context, Base.metadata) == []


def test_migrated_foreign_key_cascades_and_constraints_are_named(engine: Engine) -> None:
    inspector = inspect(engine)
    (fk,) = inspector.get_foreign_keys("faces")
    assert fk["name"] == "fk_faces_person_id_people"
    assert fk["referred_table"] == "people" and fk["options"].get("ondelete") == "CASCADE"
    assert {uq["name"] for uq in inspector.get_unique_constraints("faces")} == {"uq_faces_person_id_photo_sha256"}
    indexes = {ix["name"] for ix in inspector.get_indexes("faces") if not ix.get("duplicates_constraint")}
    assert indexes == {"ix_faces_person_id", "ix_faces_model_id"}  # PostgreSQL also lists the unique one


def test_upgrade_is_idempotent_and_starts_at_generation_zero(engine: Engine, sessions) -> None:
    upgrade_database(engine)
    upgrade_database(engine)
    head = ScriptDirectory.from_config(alembic_config(str(engine.url))).get_current_head()
    with engine.connect() as connection:
        assert MigrationContext.configure(connection).get_current_revision() == head
    with sessions() as session:
        assert current_generation(session) == 0


def test_upgrade_from_a_url_creates_the_folder(tmp_path: Path) -> None:
    home = tmp_path / "not" / "yet"
    url = sqlite_url(home)
    assert url == f"sqlite:///{(home / 'facerec.db').resolve().as_posix()}"
    upgrade_database(url)
    assert (home / "facerec.db").is_file()
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            assert current_generation(session) == 0
    finally:
        engine.dispose()


def test_batch_migration_of_people_keeps_their_faces(tmp_path: Path, sqlite_engine: Engine) -> None:
    # A SQLite batch migration re-creates the table; with foreign keys on, that would cascade.
    sessions = session_factory(sqlite_engine)
    scripts = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    head = ScriptDirectory.from_config(alembic_config(str(sqlite_engine.url))).get_current_head()
    (scripts / "versions" / "9999_widen_name.py").write_text(
        f'import sqlalchemy as sa\nfrom alembic import op\n\nrevision = "9999"\ndown_revision = "{head}"\n\n'
        "def upgrade():\n"
        '    with op.batch_alter_table("people", recreate="always") as batch:\n'
        '        batch.alter_column("name", existing_type=sa.String(256), type_=sa.String(300))\n'
    )
    _person_with_faces(sessions, SHA_A, SHA_B)
    upgrade_database(sqlite_engine, script_location=scripts)
    with sessions() as session:
        assert _count(session, FaceRow) == 2
    with sqlite_engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_crop_files_move_into_the_database(tmp_path: Path, database_url: str) -> None:
    """Migration 0002 copies the crop files of the home it is told of into face_crops; `import-crops`
    copies another host's; faces.crop_path stays for replicas not yet upgraded; a crop goes with its face."""
    from service.config import load_config
    from service.roster.roster import Roster

    home, other_host = tmp_path / "home", tmp_path / "other-host"
    for folder, name in ((home, "a.png"), (other_host, "b.png")):
        (folder / "crops" / "1").mkdir(parents=True)
        (folder / "crops" / "1" / name).write_bytes(b"\x89PNG " + name.encode())
    engine = make_engine(database_url or sqlite_url(home))
    try:
        upgrade_database(engine, "0001")
        with engine.begin() as connection:
            connection.exec_driver_sql("INSERT INTO people (external_id, active, created_at, updated_at) "
                                       "VALUES ('E1', true, '2026-01-01 00:00:00+00', '2026-01-01 00:00:00+00')")
            person = connection.exec_driver_sql("SELECT id FROM people").scalar()
            blob = "x'00'" if engine.dialect.name == "sqlite" else "'\\x00'"
            for sha, path in ((SHA_A, "crops/1/a.png"), (SHA_B, "crops/1/b.png")):
                connection.exec_driver_sql(
                    "INSERT INTO faces (person_id, encoding, model_id, photo_sha256, box_x, box_y, box_w, box_h, "
                    f"crop_path, created_at, updated_at) VALUES ({person}, {blob}, 'm', '{sha}', 0, 0, 1, 1, "
                    f"'{path}', '2026-01-01 00:00:00+00', '2026-01-01 00:00:00+00')")

        def crops() -> list:
            with engine.connect() as connection:
                return sorted((sha, bytes(png)) for sha, png in connection.exec_driver_sql(
                    "SELECT f.photo_sha256, c.png FROM face_crops c JOIN faces f ON f.id = c.face_id"))

        upgrade_database(engine, home=home)
        assert crops() == [(SHA_A, b"\x89PNG a.png")]  # b.png is on the other host
        assert "crop_path" in {c["name"] for c in inspect(engine).get_columns("faces")}
        roster = Roster(load_config(home=str(other_host), database_url=database_url or sqlite_url(home)), "m")
        assert roster.import_crop_files(other_host) == (1, 0)  # b.png; a.png is in already
        assert roster.import_crop_files(other_host) == (0, 0)
        roster.close()
        assert crops() == [(SHA_A, b"\x89PNG a.png"), (SHA_B, b"\x89PNG b.png")]
        with session_factory(engine).begin() as session:
            session.execute(delete(FaceRow))
        assert crops() == []
    finally:
        engine.dispose()


def test_face_ids_are_never_reused(engine: Engine, sessions) -> None:
    """A deleted face's id is never given to a new face: worker indexes and thumbnails go by id."""
    _person_with_faces(sessions, SHA_A, SHA_B)
    with sessions.begin() as session:
        highest = session.scalar(select(func.max(FaceRow.id)))
        session.execute(delete(FaceRow).where(FaceRow.id == highest))
    with sessions.begin() as session:
        person = session.scalar(select(PersonRow.id))
        session.add(_face("c" * 64, person_id=person))
    with sessions() as session:
        assert session.scalar(select(func.max(FaceRow.id))) > highest


# --- SQLite connection set-up -----------------------------------------------------------------


def test_sqlite_connections_use_wal_foreign_keys_and_busy_timeout(sqlite_engine: Engine) -> None:
    with sqlite_engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000


# --- constraints ------------------------------------------------------------------------------


def test_deleting_a_person_deletes_their_faces_in_the_database(sessions) -> None:
    person_id = _person_with_faces(sessions, SHA_A, SHA_B)
    with sessions.begin() as session:
        # A Core DELETE: the ORM cascade plays no part, so the database's ON DELETE CASCADE must.
        session.execute(delete(PersonRow).where(PersonRow.id == person_id))
    with sessions() as session:
        assert _count(session, PersonRow) == 0
        assert _count(session, FaceRow) == 0


def test_the_same_photo_twice_for_one_person_is_refused_and_nothing_is_written(sessions) -> None:
    with pytest.raises(IntegrityError):
        with sessions.begin() as session:
            session.add(PersonRow(external_id="E001", faces=[_face(SHA_A), _face(SHA_A)]))
    with sessions() as session:
        assert _count(session, PersonRow) == 0
        assert _count(session, FaceRow) == 0


def test_the_same_photo_for_two_people_is_allowed(sessions) -> None:
    with sessions.begin() as session:
        session.add_all([PersonRow(external_id="E001", faces=[_face(SHA_A)]),
                         PersonRow(external_id="E002", faces=[_face(SHA_A)])])
    with sessions() as session:
        assert _count(session, FaceRow) == 2


def test_external_id_is_unique(sessions) -> None:
    _person_with_faces(sessions)
    with pytest.raises(IntegrityError):
        with sessions.begin() as session:
            session.add(PersonRow(external_id="E001"))


# --- columns ----------------------------------------------------------------------------------


def test_defaults_json_and_utc_timestamps_round_trip(sessions) -> None:
    person_id = _person_with_faces(sessions, SHA_A)
    with sessions.begin() as session:
        session.get(PersonRow, person_id).attributes = {"team": "door", "floor": 2}
    with sessions() as session:
        person = session.get(PersonRow, person_id)
        assert person.active is True
        assert person.attributes == {"team": "door", "floor": 2}
        assert person.created_at.tzinfo == UTC and person.updated_at >= person.created_at
        assert person.faces[0].score is None


def test_naive_datetimes_are_refused(sessions) -> None:
    with pytest.raises(StatementError):
        with sessions.begin() as session:
            session.add(PersonRow(external_id="E001", created_at=datetime(2025, 1, 1)))


def test_encoding_bytes_round_trip() -> None:
    vector = np.random.default_rng(0).standard_normal(128).astype(np.float32)
    data = encoding_to_bytes(vector)
    assert len(data) == 512 and data[:4] == vector[:1].astype("<f4").tobytes()
    back = encoding_from_bytes(data)
    assert back.dtype == np.float32 and back.shape == (128,)
    np.testing.assert_array_equal(back, vector)


def test_many_encodings_decode_in_one_call_as_each_alone() -> None:
    vectors = np.random.default_rng(1).standard_normal((5, 128)).astype(np.float32)
    blobs = [encoding_to_bytes(v) for v in vectors]
    np.testing.assert_array_equal(encodings_from_bytes(blobs), np.stack([encoding_from_bytes(b) for b in blobs]))
    assert encodings_from_bytes([]).shape == (0, 128)
    with pytest.raises(ValueError):
        encodings_from_bytes([blobs[0], blobs[1][:-1]])


@pytest.mark.parametrize("data", [b"", bytes(511), bytes(513), bytes(1024)])
def test_stored_encoding_of_wrong_length_is_refused(data: bytes) -> None:
    with pytest.raises(ValueError):
        encoding_from_bytes(data)


@pytest.mark.parametrize("shape", [(127,), (129,), (1, 128), ()])
def test_encoding_of_wrong_shape_is_refused(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError):
        encoding_to_bytes(np.zeros(shape))


# --- generation -------------------------------------------------------------------------------


def test_bump_generation_increments(sessions) -> None:
    with sessions.begin() as session:
        assert bump_generation(session) == 1
        assert bump_generation(session) == 2
        assert current_generation(session) == 2
    with sessions() as session:
        assert current_generation(session) == 2


def test_a_rolled_back_bump_does_not_stick(sessions) -> None:
    with sessions() as session:
        session.add(PersonRow(external_id="E001"))
        assert bump_generation(session) == 1
        session.rollback()
    with sessions() as session:
        assert current_generation(session) == 0
        assert _count(session, PersonRow) == 0
