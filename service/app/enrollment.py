"""Enrollment: photos of a person become stored faces, each photo accepted or refused with a reason."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from service.app import inputs
from service.app.photos import Photo, photos_by_person, single_faces
from service.app.results import ACCEPTED, REFUSED, Enrollment, ImportSummary, PhotoOutcome
from service.errors import FacerecError, UnknownPerson

if TYPE_CHECKING:
    from service.app.core import Facerec
    from service.roster.database import PersonRow
    from service.roster.roster import NewPerson

    Person = PersonRow | NewPerson  # an enrolled person, or one to create with their first face

OnOutcome = Callable[[PhotoOutcome], object]


class EnrollmentService:
    def __init__(self, core: Facerec):
        self.core = core

    def enroll(self, person_id: str, photos: Sequence[Photo], name: str | None = None,
               create: bool = True) -> Enrollment:
        """Enroll several photos of one person; one outcome per photo, in order.

        With ``create``, a person who does not exist yet is created with their first face, in its
        transaction, so a refused request (or a process killed midway) leaves nothing behind. Without
        it, UnknownPerson (and a person deleted meanwhile stays deleted).
        """
        from service.roster.roster import NewPerson

        person_id, name = inputs.person_id(person_id), inputs.person_name(name)
        roster = self.core.roster
        person = roster.find_person(person_id) if create else roster.get_person(person_id)
        person = person or NewPerson(person_id, name)
        outcomes = self._enroll_batch([(person, photo) for photo in photos])
        if (person.id is not None and name is not None and name != person.name
                and any(o.enrolled for o in outcomes)):
            roster.update_person(person_id, name=name)  # a request that enrolled nothing changes nothing
        return Enrollment(person_id, tuple(outcomes))

    def import_folder(self, folder: Path, batch_size: int = 32, on_outcome: OnOutcome | None = None,
                      on_total: Callable[[int], object] | None = None) -> ImportSummary:
        """Enroll ``folder/<person>/*`` (the sub-folder's name is the person id), a batch at a time.

        ``on_total`` hears how many photos there are; each outcome is passed to ``on_outcome`` once its
        batch is committed, so what it reports is durable. A person is created with their first face,
        so people none of whose photos could be enrolled are not left behind, even by a killed run.
        Running it again finds every photo enrolled.
        """
        from service.roster.roster import NewPerson

        started = time.monotonic()
        people = photos_by_person(folder)
        invalid = []
        for name in people:
            try:
                inputs.person_id(name)
            except FacerecError:
                invalid.append(name)
        if invalid:  # before anything is written
            raise FacerecError(f"folder names that cannot be person ids (1 to {inputs.MAX_PERSON_ID} characters, "
                               f"no slashes or control characters): {invalid[:5]}")
        roster = self.core.roster
        ids = {name: inputs.person_id(name) for name in people}
        rows = {name: roster.find_person(ids[name]) or NewPerson(ids[name]) for name in people}
        work = [(name, Photo.from_path(path)) for name, paths in people.items() for path in paths]
        summary = ImportSummary(str(folder), photos=len(work))
        if on_total:
            on_total(len(work))
        step = max(1, batch_size)
        for start in range(0, len(work), step):
            batch = work[start:start + step]
            outcomes = self._enroll_batch([(rows[name], photo) for name, photo in batch])
            for name in {name for (name, _), outcome in zip(batch, outcomes) if outcome.enrolled}:
                if rows[name].id is None:  # created by this batch: later ones add to that row, so
                    rows[name] = roster.find_person(ids[name]) or rows[name]  # a deletion meanwhile holds
            for outcome in outcomes:
                summary.count(outcome)
                if on_outcome:
                    on_outcome(outcome)
        summary.people = sum(row.id is not None for row in rows.values())
        summary.seconds = time.monotonic() - started
        return summary

    def _enroll_batch(self, items: list[tuple[Person, Photo]]) -> list[PhotoOutcome]:
        """Duplicates and unreadable photos are settled first; the rest are located, encoded and
        stored together. The same photo twice for one person counts once."""
        roster = self.core.roster
        known = roster.known_photos({person.external_id for person, _ in items})
        outcomes: list[PhotoOutcome | None] = [None] * len(items)
        firsts: dict[tuple[str, str], int] = {}  # (person, sha) -> position of its first offer here
        repeats: dict[int, int] = {}
        todo: list[tuple[int, Person, Photo, str]] = []
        for position, (person, photo) in enumerate(items):
            try:
                sha = photo.sha256()
            except FacerecError as exc:
                outcomes[position] = _refused(person, photo, exc.code, exc.message)
                continue
            key = (person.external_id, sha)
            if key in known:
                outcomes[position] = _duplicate(person, photo, known[key])
            elif key in firsts:
                repeats[position] = firsts[key]
            else:
                firsts[key] = position
                todo.append((position, person, photo, sha))
        if todo:
            self._store(todo, outcomes)
        for position, first in repeats.items():
            person, photo = items[position]
            earlier = outcomes[first]
            outcomes[position] = (_duplicate(person, photo, earlier.face_id) if earlier.status == ACCEPTED else
                                  _refused(person, photo, earlier.reason, earlier.message))
        return outcomes

    def _store(self, todo: list[tuple[int, Person, Photo, str]], outcomes: list) -> None:
        from service.roster.roster import NewFace

        roster = self.core.roster
        found = single_faces(self.core.pipeline, [photo for _, _, photo, _ in todo])
        stored: list[tuple[int, Person, Photo, str, int]] = []
        new_faces = []
        for (position, person, photo, sha), single in zip(todo, found):
            if isinstance(single, FacerecError):
                outcomes[position] = _refused(person, photo, single.code, single.message)
                continue
            face = single.face
            owner = person if person.id is None else person.id  # a new person is created with the face
            new_faces.append(NewFace(owner, sha, face.box, face.confidence, face.crop, face.encoding))
            stored.append((position, person, photo, sha, single.faces_found))
        face_ids = roster.add_faces(new_faces)
        lost = [person for (_, person, _, _, _), i in zip(stored, face_ids) if i is None]
        taken = roster.known_photos({person.external_id for person in lost}) if lost else {}
        for (position, person, photo, sha, count), face_id in zip(stored, face_ids):
            if face_id is not None:
                outcomes[position] = PhotoOutcome(photo.label, person.external_id, ACCEPTED, face_id=face_id,
                                                  faces_found=count)
            elif (person.external_id, sha) in taken:  # another process stored the same photo first
                outcomes[position] = _duplicate(person, photo, taken[(person.external_id, sha)])
            else:  # the person was deleted while their photos were being encoded: they stay deleted
                outcomes[position] = _refused(person, photo, UnknownPerson.code,
                                              f"{person.external_id!r} was removed during enrollment")


def _refused(person: Person, photo: Photo, reason: str, message: str) -> PhotoOutcome:
    return PhotoOutcome(photo.label, person.external_id, REFUSED, reason=reason, message=message)


def _duplicate(person: Person, photo: Photo, face_id: int | None) -> PhotoOutcome:
    return PhotoOutcome(photo.label, person.external_id, REFUSED, face_id=face_id, reason="duplicate",
                        message=f"{photo.label} is already enrolled for {person.external_id!r} (face {face_id})")
