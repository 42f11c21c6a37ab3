"""The persistent roster: people, faces and their aligned crops in the database, the encodings also in
a FAISS index. Storage only: it is handed finished faces and answers queries; the pipeline
and every decision live above it, in the application layer.

Writes commit to the database first and bump the roster generation in the same transaction; this
process's index then follows (see :mod:`service.roster.face_index`). The index is loaded only when a
search needs it, so people commands never pay for it.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from PIL import Image
from sqlalchemy import Row, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from service.config import Config
from service.errors import PersonExists, UnknownFace, UnknownPerson
from service.roster.codec import encoding_to_bytes, encodings_from_bytes
from service.roster.audit import AuditStore
from service.roster.crops import crop_to_png
from service.roster.database import (
    CropRow, FaceRow, PersonRow, bump_generation, current_generation, make_engine, session_factory, upgrade_database,
    utcnow,
)
from service.roster.face_index import Progress, RosterIndex, remove_leftovers


@dataclass(frozen=True)
class NewPerson:
    """A person to create with their first face, in the transaction that stores it: a process killed
    before that commit leaves no faceless person behind. Taken as is if they exist by then."""

    external_id: str
    name: str | None = None
    id: None = None  # not stored yet


@dataclass(frozen=True, eq=False)
class NewFace:
    """A face ready to store: whose it is (a person's row id, or a person to create with it), which
    photo it came from, where, its crop and encoding."""

    person: int | NewPerson
    photo_sha256: str
    box: tuple[float, float, float, float]
    confidence: float | None
    crop: Image.Image
    encoding: np.ndarray


class Roster:
    """People, their faces and the index over them, for one data home and one encoding model."""

    def __init__(self, config: Config, model_id: str | Callable[[], str] | None = None, persist_index: bool = True):
        """``model_id`` names the encodings stored, searched and compared: the id itself, or a
        function giving it when first needed (people commands never need it)."""
        self.config = config
        self._model_source = model_id
        self._model_id: str | None = model_id if isinstance(model_id, str) else None
        self._persist_index = persist_index
        self.engine = make_engine(config.database)
        upgrade_database(self.engine, home=config.home)
        self.sessions = session_factory(self.engine)
        self.audit = AuditStore(self.engine)  # the same database keeps the record of decisions
        self._index: RosterIndex | None = None
        remove_leftovers(config.index_dir)  # what a process killed while saving the index left

    @property
    def model_id(self) -> str:
        if self._model_id is None:
            if not callable(self._model_source):
                raise RuntimeError("this roster was opened without a model id: it cannot store or search encodings")
            self._model_id = self._model_source()
        return self._model_id

    @property
    def index(self) -> RosterIndex:
        """This process's search index (loaded, or rebuilt, on its first search)."""
        if self._index is None:
            self._index = RosterIndex(self.engine, self.model_id, self.config.index_dir,
                                      persist=self._persist_index, settings=self.config.index)
        return self._index

    def close(self) -> None:
        if self._index is not None:
            self._index.save()
        self.engine.dispose()

    # ---- people -----------------------------------------------------------------------------------

    def add_person(self, external_id: str, name: str | None = None, metadata: dict | None = None) -> PersonRow:
        """A new person; PersonExists if the id is taken (the unique constraint decides races)."""
        try:
            with self.sessions() as session, session.begin():
                person = PersonRow(external_id=external_id, name=name, attributes=metadata, active=True)
                session.add(person)
        except IntegrityError:
            raise PersonExists(f"person {external_id!r} already exists") from None
        return person

    def find_person(self, external_id: str) -> PersonRow | None:
        with self.sessions() as session:
            return session.scalar(select(PersonRow).where(PersonRow.external_id == external_id))

    def get_person(self, external_id: str) -> PersonRow:
        person = self.find_person(external_id)
        if person is None:
            raise UnknownPerson(f"{external_id!r} is not enrolled")
        return person

    def update_person(self, external_id: str, **changes) -> PersonRow:
        """Set ``name``, ``attributes`` and/or ``active``. No index change (searches filter on
        ``active`` in the database), so no generation bump."""
        with self.sessions() as session, session.begin():
            person = session.scalar(select(PersonRow).where(PersonRow.external_id == external_id))
            if person is None:
                raise UnknownPerson(f"{external_id!r} is not enrolled")
            for field, value in changes.items():
                setattr(person, field, value)
        return person

    def list_people(self, offset: int = 0, limit: int | None = None, search: str | None = None) -> list[tuple[Row, int]]:
        """People ordered by id, each with their number of faces; with ``search``, those whose id or
        name contains it, in any case. Rows with a person's columns, read through Core: building ORM
        objects took a third of a second per 20,000 people."""
        columns = (PersonRow.external_id, PersonRow.name, PersonRow.attributes, PersonRow.active,
                   PersonRow.created_at, PersonRow.updated_at)
        query = (select(*columns, func.count(FaceRow.id)).outerjoin(FaceRow).where(*_matching(search))
                 .group_by(PersonRow.id).order_by(PersonRow.external_id).offset(offset).limit(limit))
        with self.engine.connect() as connection:
            return [(row, row[-1]) for row in connection.execute(query)]

    def count_people(self, search: str | None = None) -> int:
        with self.sessions() as session:
            return session.scalar(select(func.count(PersonRow.id)).where(*_matching(search))) or 0

    def person_ids(self) -> set[str]:
        with self.sessions() as session:
            return set(session.scalars(select(PersonRow.external_id)))

    def remove_person(self, external_id: str) -> list[int]:
        """Delete a person with their faces, crops (by cascade) and index entries; the face ids removed."""
        with self.index_lock():
            with self.sessions() as session, session.begin():
                person = session.scalar(select(PersonRow).where(PersonRow.external_id == external_id))
                if person is None:
                    raise UnknownPerson(f"{external_id!r} is not enrolled")
                face_ids = list(session.scalars(select(FaceRow.id).where(FaceRow.person_id == person.id)))
                session.delete(person)
                generation = bump_generation(session)
            self._follow(generation, remove=face_ids)
        return face_ids

    # ---- faces ------------------------------------------------------------------------------------

    def count_faces_of(self, person_row_id: int) -> int:
        with self.sessions() as session:
            return session.scalar(select(func.count(FaceRow.id)).where(FaceRow.person_id == person_row_id)) or 0

    def faces_of(self, external_id: str) -> list[FaceRow]:
        person = self.get_person(external_id)
        with self.sessions() as session:
            return list(session.scalars(select(FaceRow).where(FaceRow.person_id == person.id).order_by(FaceRow.id)))

    def get_face(self, face_id: int) -> tuple[FaceRow, str]:
        """A face and its person's id; UnknownFace if there is none."""
        with self.sessions() as session:
            row = session.execute(select(FaceRow, PersonRow.external_id).join(PersonRow)
                                  .where(FaceRow.id == face_id)).first()
        if row is None:
            raise UnknownFace(f"no face with id {face_id}")
        return row[0], row[1]

    def remove_face(self, face_id: int) -> FaceRow:
        with self.index_lock():
            with self.sessions() as session, session.begin():
                face = session.get(FaceRow, face_id)
                if face is None:
                    raise UnknownFace(f"no face with id {face_id}")
                session.delete(face)
                generation = bump_generation(session)
            self._follow(generation, remove=[face_id])
        return face

    def known_photos(self, external_ids: Iterable[str]) -> dict[tuple[str, str], int]:
        """(person id, photo sha256) -> face id, for the photos these people already have."""
        query = (select(PersonRow.external_id, FaceRow.photo_sha256, FaceRow.id).join(PersonRow)
                 .where(PersonRow.external_id.in_(list(external_ids))))
        with self.engine.connect() as connection:
            return {(person, sha): face for person, sha, face in connection.execute(query)}

    def add_faces(self, faces: list[NewFace]) -> list[int | None]:
        """Store faces (one transaction), keep their crops, have the index follow; ids in order.

        Another process may store the same photo for the same person between the caller's duplicate
        check and this commit (or create the same new person): the unique constraint then refuses the
        batch, and it is retried a face at a time, the taken photos coming back as None.
        """
        if not faces:
            return []
        try:
            return self._commit_faces(faces)
        except IntegrityError:
            if len(faces) == 1:
                return [None]
            return [face_id for face in faces for face_id in self.add_faces([face])]

    def _commit_faces(self, faces: list[NewFace]) -> list[int]:
        pngs = [crop_to_png(face.crop) for face in faces]  # before the transaction: it holds the write lock
        self.index.load()  # so the index follows the new faces (removals can wait for the next load)
        with self.index_lock():
            with self.sessions() as session, session.begin():
                rows = [self._face_row(face, owner) for face, owner in zip(faces, self._owners(session, faces))]
                session.add_all(rows)
                session.flush()  # assigns ids
                session.add_all([CropRow(face_id=row.id, png=png) for row, png in zip(rows, pngs)])
                generation = bump_generation(session)
            ids = np.array([row.id for row in rows], np.int64)
            self._follow(generation, add=(ids, np.stack([face.encoding for face in faces])))
        return ids.tolist()

    @staticmethod
    def _owners(session, faces: list[NewFace]) -> list[int]:
        """Each face's person row id, the people to create created (in the caller's transaction)."""
        made: dict[str, int] = {}
        for face in faces:
            person = face.person
            if isinstance(person, NewPerson) and person.external_id not in made:
                found = session.scalar(select(PersonRow.id).where(PersonRow.external_id == person.external_id))
                if found is None:
                    row = PersonRow(external_id=person.external_id, name=person.name, active=True)
                    session.add(row)
                    session.flush()  # assigns the id; a person created meanwhile elsewhere fails here
                    found = row.id
                made[person.external_id] = found
        return [made[f.person.external_id] if isinstance(f.person, NewPerson) else f.person for f in faces]

    def _face_row(self, face: NewFace, person_row_id: int) -> FaceRow:
        x, y, w, h = face.box
        return FaceRow(person_id=person_row_id, encoding=encoding_to_bytes(face.encoding),
                       model_id=self.model_id, photo_sha256=face.photo_sha256, box_x=x, box_y=y, box_w=w,
                       box_h=h, score=face.confidence)

    def import_crop_files(self, home: Path, batch: int = 500) -> tuple[int, int]:
        """Copy into the database the crop files an earlier version kept under ``home`` for faces that
        have no crop in the database yet; (copied, not found under this home)."""
        query = (select(FaceRow.id, FaceRow.crop_path).outerjoin(CropRow, CropRow.face_id == FaceRow.id)
                 .where(FaceRow.crop_path.is_not(None), CropRow.face_id.is_(None)))
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        copied = missing = 0
        for start in range(0, len(rows), batch):
            found = []
            for face_id, crop_path in rows[start:start + batch]:
                try:
                    found.append({"face_id": face_id, "png": (Path(home) / crop_path).read_bytes()})
                except OSError:
                    missing += 1
            if found:
                with self.engine.begin() as connection:
                    connection.execute(insert(CropRow), found)
                copied += len(found)
        return copied, missing

    def crop_of(self, face_id: int) -> bytes | None:
        """The face's kept crop (PNG bytes), or None."""
        with self.sessions() as session:
            return session.scalar(select(CropRow.png).where(CropRow.face_id == face_id))

    # ---- search (the gallery the application's decisions read) ------------------------------------

    def encodings_of(self, external_id: str) -> np.ndarray:
        """Every encoding of an active person made by this roster's model; UnknownPerson otherwise."""
        person = self.get_person(external_id)
        if not person.active:
            raise UnknownPerson(f"{external_id!r} is not active")
        with self.sessions() as session:
            blobs = list(session.scalars(select(FaceRow.encoding).where(FaceRow.person_id == person.id,
                                                                        FaceRow.model_id == self.model_id)))
        if not blobs:
            raise UnknownPerson(f"{external_id!r} has no enrolled face")
        return encodings_from_bytes(blobs)

    def nearest_faces(self, encoding: np.ndarray, k: int) -> list[tuple[float, str | None]]:
        """The ``k`` nearest faces as (distance, person id), nearest first; the person is None for
        a face whose person is inactive (kept in the index, skipped by the decision)."""
        found = self.index.search(encoding, k)  # catches up with the database first
        owners = self._active_owners([face_id for _, face_id in found])
        return [(distance, owners.get(face_id)) for distance, face_id in found]

    def searchable_faces(self) -> int:
        """Faces in this process's index (loading it if need be)."""
        return len(self.index)

    def _active_owners(self, face_ids: list[int]) -> dict[int, str]:
        if not face_ids:
            return {}
        query = (select(FaceRow.id, PersonRow.external_id).join(PersonRow)
                 .where(FaceRow.id.in_(face_ids), PersonRow.active.is_(True)))
        with self.engine.connect() as connection:  # Core, not an ORM session: ~0.6 ms less per identify
            return dict(connection.execute(query).all())

    # ---- index upkeep and model changes ---------------------------------------------------------

    def index_lock(self):
        """The lock this process's index changes take; a no-op lock for a roster that cannot search."""
        return self._index.lock if self._index is not None else nullcontext()

    def _follow(self, generation: int, add=None, remove=None) -> None:
        if self._index is not None:
            self._index.follow(generation, add=add, remove=remove)

    def rebuild_index(self, progress: Progress | None = None, build_progress: Progress | None = None) -> tuple[int, int]:
        """Rebuild the index (of the configured kind) from the database; (vectors, generation)."""
        generation = self.index.rebuild(progress, build_progress=build_progress)
        return len(self.index), generation

    def state(self) -> tuple[int, int]:
        """(faces of this model in the database, roster generation), read in one transaction."""
        with self.sessions() as session, session.begin():
            generation = current_generation(session)
            faces = session.scalar(select(func.count(FaceRow.id)).where(FaceRow.model_id == self.model_id))
        return faces or 0, generation

    def count_stale_faces(self) -> int:
        """Faces whose encoding was made by another model than this roster's."""
        with self.sessions() as session:
            return session.scalar(select(func.count(FaceRow.id)).where(FaceRow.model_id != self.model_id)) or 0

    def stale_faces(self, after: int, limit: int) -> list[tuple[int, bytes | None]]:
        """(face id, kept crop as PNG or None) of the next ``limit`` stale faces with ids above ``after``."""
        with self.sessions() as session:
            query = (select(FaceRow.id, CropRow.png).outerjoin(CropRow, CropRow.face_id == FaceRow.id)
                     .where(FaceRow.model_id != self.model_id, FaceRow.id > after)
                     .order_by(FaceRow.id).limit(limit))
            return [(face_id, png) for face_id, png in session.execute(query)]

    def store_encodings(self, face_ids: list[int], vectors: np.ndarray) -> None:
        """Replace these faces' encodings with ones made by this roster's model (one transaction)."""
        stored_ids, stored = [], []
        with self.index_lock():
            with self.sessions() as session, session.begin():
                for face_id, vector in zip(face_ids, vectors):
                    changed = session.execute(update(FaceRow).where(FaceRow.id == face_id).values(  # Core: set updated_at
                        encoding=encoding_to_bytes(vector), model_id=self.model_id, updated_at=utcnow()))
                    if changed.rowcount:  # a face deleted since it was read is not there to change
                        stored_ids.append(face_id)
                        stored.append(vector)
                generation = bump_generation(session)
            self._follow(generation, add=(np.asarray(stored_ids, np.int64), np.asarray(stored, np.float32)))


def _matching(search: str | None) -> list:
    """The conditions of a people search: id or name containing ``search``, case-insensitively
    (LIKE's own wildcards in it are taken literally)."""
    if not search:
        return []
    text = search.lower()
    return [or_(func.lower(PersonRow.external_id).contains(text, autoescape=True),
                func.lower(PersonRow.name).contains(text, autoescape=True))]
