"""People and their enrolled faces: create, read, change, delete."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from service.app import inputs
from service.app.results import (
    AuditEvent, Deletion, EnrolledFace, ExportedFace, FaceList, PeoplePage, Person, PersonExport,
)
from service.errors import FacerecError, UnknownFace

if TYPE_CHECKING:
    from service.app.core import Facerec

_UNSET: Any = object()


class PeopleService:
    def __init__(self, core: Facerec):
        self.core = core

    def create(self, person_id: str, name: str | None = None, metadata: dict | None = None) -> Person:
        """A new person with no face yet; PersonExists if the id is taken."""
        row = self.core.roster.add_person(inputs.person_id(person_id), inputs.person_name(name),
                                          inputs.metadata(metadata))
        return Person.from_row(row, 0)

    def get(self, person_id: str) -> Person:
        roster = self.core.roster
        row = roster.get_person(inputs.person_id(person_id))
        return Person.from_row(row, roster.count_faces_of(row.id))

    def list(self, offset: int = 0, limit: int | None = None, search: str | None = None) -> PeoplePage:
        """People ordered by id, a page at a time (``limit`` None: all of them); with ``search``, those
        whose id or name contains it, in any case."""
        search = inputs.search_text(search)
        roster = self.core.roster
        people = tuple(Person.from_row(row, faces) for row, faces in roster.list_people(offset, limit, search))
        total = roster.count_people(search) if limit is not None or offset else len(people)
        return PeoplePage(people, total, offset, limit)

    def count(self) -> int:
        return self.core.roster.count_people()

    def update(self, person_id: str, name: Any = _UNSET, metadata: Any = _UNSET, active: Any = _UNSET) -> Person:
        """Change the given fields only (a field given as None is cleared)."""
        changes = {}
        if name is not _UNSET:
            changes["name"] = inputs.person_name(name)
        if metadata is not _UNSET:
            changes["attributes"] = inputs.metadata(metadata)
        if active is not _UNSET:
            if not isinstance(active, bool):
                raise FacerecError("active is true or false")
            changes["active"] = active
        roster = self.core.roster
        row = roster.update_person(inputs.person_id(person_id), **changes)
        return Person.from_row(row, roster.count_faces_of(row.id))

    def remove(self, person_id: str) -> Deletion:
        """Delete a person with their faces, kept crops and index entries; with ``audit.erase_on_delete``,
        also every recorded decision that names them."""
        person_id = inputs.person_id(person_id)
        removed = self.core.roster.remove_person(person_id)
        erased = self.core.roster.audit.erase_person(person_id) if self.core.config.audit.erase_on_delete else 0
        return Deletion("person", person_id, None, len(removed), erased)

    def export(self, person_id: str) -> PersonExport:
        """Everything held about a person: the record, each face's encoding and crop, their decisions."""
        from service.roster.codec import encodings_from_bytes
        from service.roster.database import utcnow

        person = self.get(person_id)
        roster = self.core.roster
        rows = roster.faces_of(person.id)
        encodings = encodings_from_bytes([row.encoding for row in rows]) if rows else []
        faces = tuple(ExportedFace(EnrolledFace.from_row(row, person.id), tuple(float(v) for v in encoding),
                                   roster.crop_of(row.id)) for row, encoding in zip(rows, encodings))
        events = tuple(AuditEvent.from_row(row) for row in roster.audit.of_person(person.id))
        return PersonExport(person, faces, events, utcnow())

    def faces(self, person_id: str) -> FaceList:
        person_id = inputs.person_id(person_id)
        rows = self.core.roster.faces_of(person_id)
        return FaceList(person_id, tuple(EnrolledFace.from_row(row, person_id) for row in rows))

    def crop_jpeg(self, person_id: str, face_id: int) -> bytes:
        """The face's kept aligned crop (160x160) as a JPEG: a thumbnail for people who look after the
        roster. UnknownFace if the face is not this person's or keeps no crop."""
        from service.roster.crops import crop_from_png, crop_to_jpeg

        person_id, face_id = inputs.person_id(person_id), inputs.face_id(face_id)
        roster = self.core.roster
        roster.get_person(person_id)
        _, owner = roster.get_face(face_id)
        crop = crop_from_png(roster.crop_of(face_id)) if owner == person_id else None
        if crop is None:
            raise UnknownFace(f"{person_id!r} has no face {face_id} with a kept crop")
        return crop_to_jpeg(crop)

    def remove_face(self, face_id: int, person_id: str | None = None) -> Deletion:
        """Delete one face; given ``person_id``, only if it is that person's."""
        face_id = inputs.face_id(face_id)
        roster = self.core.roster
        if person_id is not None:
            person_id = inputs.person_id(person_id)
            roster.get_person(person_id)  # UnknownPerson before UnknownFace
        _, owner = roster.get_face(face_id)
        if person_id is not None and owner != person_id:
            raise UnknownFace(f"{person_id!r} has no face {face_id}")
        roster.remove_face(face_id)
        return Deletion("face", owner, face_id, 1)
