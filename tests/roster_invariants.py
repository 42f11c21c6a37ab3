"""What must hold of a data home and its database whatever happened to the processes writing them,
read from the real database (SQLAlchemy) and the real index (the ``index`` package and the roster's
own start-up): for the crash tests, and any test that wants to say "nothing was left half-done".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import func, select

from index import FaceIndex, IndexLoadError, read_manifest
from service.config import load_config
from service.roster.codec import encodings_from_bytes
from service.roster.database import CropRow, FaceRow, PersonRow, current_generation, make_engine
from service.roster.roster import Roster

# Every file a data home may hold. SQLite's -wal and -shm belong to SQLite, which recovers them itself.
HOME_FILES = {"facerec.db", "facerec.db-wal", "facerec.db-shm", "facerec.db-journal", "audit.log", "api-keys.yaml",
              "server.log", "index/faces.faiss", "index/manifest.json"}


@dataclass
class Stored:
    """The database's side: face id -> (person id, model id, encoding)."""

    faces: dict[int, tuple[str, str, np.ndarray]]
    people: set[str]
    generation: int


def read_database(home: Path) -> Stored:
    """The faces, people and generation of the home's database (FACEREC_DATABASE_URL if set)."""
    engine = make_engine(load_config(home=str(home)).database)
    try:
        with engine.connect() as connection:
            rows = connection.execute(select(FaceRow.id, PersonRow.external_id, FaceRow.model_id, FaceRow.encoding)
                                      .join(PersonRow, PersonRow.id == FaceRow.person_id)).all()
            people = set(connection.scalars(select(PersonRow.external_id)))
            generation = current_generation(connection)
    finally:
        engine.dispose()
    vectors = encodings_from_bytes([row[3] for row in rows]) if rows else np.empty((0, 128), np.float32)
    return Stored({row[0]: (row[1], row[2], vector) for row, vector in zip(rows, vectors)}, people, generation)


def orphans(home: Path, may_be_faceless: set[str] = frozenset()) -> dict[str, list]:
    """Rows a finished write never leaves: faces without their person or crop, crops without a face,
    people without a face (an enrollment creates a person with their first face) other than
    ``may_be_faceless`` (created on their own, as POST /v1/people does)."""
    engine = make_engine(load_config(home=str(home)).database)
    try:
        with engine.connect() as connection:
            found = {
                "faces without a person": connection.scalars(
                    select(FaceRow.id).outerjoin(PersonRow, PersonRow.id == FaceRow.person_id)
                    .where(PersonRow.id.is_(None))).all(),
                "faces without a crop": connection.scalars(
                    select(FaceRow.id).outerjoin(CropRow, CropRow.face_id == FaceRow.id)
                    .where(CropRow.face_id.is_(None))).all(),
                "crops without a face": connection.scalars(
                    select(CropRow.face_id).outerjoin(FaceRow, FaceRow.id == CropRow.face_id)
                    .where(FaceRow.id.is_(None))).all(),
                "people without a face": connection.scalars(
                    select(PersonRow.external_id).outerjoin(FaceRow).group_by(PersonRow.id)
                    .having(func.count(FaceRow.id) == 0)).all(),
            }
            found["people without a face"] = [p for p in found["people without a face"] if p not in may_be_faceless]
    finally:
        engine.dispose()
    return {what: rows for what, rows in found.items() if rows}


def stray_files(home: Path) -> list[str]:
    """Files and folders under the home that are not a roster's: temporaries, partial files, crops/."""
    stray = []
    for path in sorted(Path(home).rglob("*")):
        relative = path.relative_to(home).as_posix()
        if path.is_dir():
            if relative != "index":
                stray.append(relative + "/")
        elif relative not in HOME_FILES:
            stray.append(relative)
    return stray


def check_index(home: Path, model_id: str, database: Stored) -> None:
    """The saved index is never ahead of the database, and the index a start loads (saved file plus
    catch-up, as every process does) holds exactly the database's faces of this model, each under
    its own encoding. Read only: the next process finds the files as the killed one left them."""
    wanted = {face_id: vector for face_id, (_, model, vector) in database.faces.items() if model == model_id}
    try:
        manifest = read_manifest(home / "index")
        saved = FaceIndex.load(home / "index", model_id=model_id)
    except IndexLoadError:
        pass  # none yet, or unusable (a save killed between its two renames): a start rebuilds it
    else:
        assert manifest.generation <= database.generation, (manifest.generation, database.generation)
        if manifest.generation == database.generation:
            _assert_holds(saved, wanted)
    roster = Roster(load_config(home=str(home)), model_id, persist_index=False)
    try:
        index = roster.index
        index.load()
        assert index.generation == database.generation
        _assert_holds(index.face_index, wanted)
    finally:
        roster.close()


def _assert_holds(index: FaceIndex, wanted: dict[int, np.ndarray]) -> None:
    """``index`` holds exactly ``wanted``'s ids, each found at distance 0 from its own encoding (or at
    one of the same photo's, enrolled for someone else)."""
    assert set(index.ids().tolist()) == set(wanted), (sorted(set(index.ids().tolist()) ^ set(wanted))[:10])
    if not wanted:
        return
    ids = np.fromiter(wanted, np.int64)
    vectors = np.stack([wanted[i] for i in ids.tolist()])
    distances, found = index.search(vectors, 1)
    assert np.all(distances[:, 0] < 1e-6), distances[:, 0].max()
    for face_id, other in zip(ids.tolist(), found[:, 0].tolist()):
        assert other == face_id or np.array_equal(wanted[other], wanted[face_id]), (face_id, other)


def check_home(home: Path, model_id: str, reported: dict[int, str], may_be_faceless: set[str] = frozenset()) -> Stored:
    """Everything above, for a home no process is writing to; ``reported``: face id -> person id of
    every photo a process said it enrolled. Returns the database's side."""
    stray = stray_files(home)
    assert not stray, f"left under the home: {stray}"
    database = read_database(home)
    lost = {face_id: person for face_id, person in reported.items()
            if database.faces.get(face_id, (None,))[0] != person}
    assert not lost, f"reported as enrolled but not in the database: {lost}"
    found = orphans(home, may_be_faceless)
    assert not found, found
    check_index(home, model_id, database)
    return database
