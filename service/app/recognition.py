"""The two questions a door asks: is this who they claim to be (verify), who is this (identify).

Both work on any roster that offers ``encodings_of`` and ``nearest_faces`` (the persistent one by
default, or a :class:`~service.roster.memory.MemoryRoster` such as a photo folder read on the fly).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from service.app import inputs
from service.app.photos import Photo, photos_by_person, single_faces
from service.app.results import (
    REFUSED, Candidate, Detection, FaceMatch, Identification, PhotoOutcome, Verification,
)
from service.app.rules import by_prominence, person_distance, rank_people
from service.errors import FacerecError, NoFace

if TYPE_CHECKING:
    from service.app.core import Facerec
    from service.roster.memory import MemoryRoster


class Gallery(Protocol):
    """What verify and identify read from a roster."""

    def encodings_of(self, person: str) -> np.ndarray: ...

    def nearest_faces(self, encoding: np.ndarray, k: int) -> list[tuple[float, str | None]]: ...

    def searchable_faces(self) -> int: ...


class RecognitionService:
    def __init__(self, core: Facerec):
        self.core = core

    def verify(self, photo: Photo, person: str, threshold: float | None = None, may_loosen: bool = True,
               gallery: Gallery | None = None) -> Verification:
        """Is the dominant face in ``photo`` the claimed person? Their nearest enrolled face decides.

        An unknown or inactive person is refused before the model is touched.
        """
        threshold = inputs.threshold(threshold, self.core.config.threshold, may_loosen)
        person = inputs.person_id(person)
        known = (gallery or self.core.roster).encodings_of(person)
        single = single_faces(self.core.pipeline, [photo])[0]
        if isinstance(single, FacerecError):
            raise single
        face = single.face
        return Verification(photo.label, person, person_distance(face.encoding, known), threshold, face.box,
                            face.confidence, single.faces_found)

    def identify(self, photo: Photo, top_k: int = 3, all_faces: bool = False, threshold: float | None = None,
                 may_loosen: bool = True, gallery: Gallery | None = None) -> Identification:
        """Who is in ``photo``: the most prominent face (or every face), each with the ``top_k``
        nearest people; NoFace when there is no face at all."""
        threshold = inputs.threshold(threshold, self.core.config.threshold, may_loosen)
        top_k = inputs.top_k(top_k)
        gallery = gallery or self.core.roster
        pipeline = self.core.pipeline
        located = pipeline.locate(photo.source)
        if not located.faces:
            raise NoFace(f"no face found in {photo.name}")
        faces = by_prominence(located)
        matches = tuple(FaceMatch(face.box, face.confidence, tuple(self.nearest_people(face.encoding, top_k, gallery)),
                                  threshold)
                        for face in pipeline.encode(faces if all_faces else faces[:1]))
        return Identification(photo.label, threshold, len(located.faces), matches)

    def detect(self, photo: Photo, encodings: bool = False) -> Detection:
        """Every face in ``photo``, most prominent first, each encoded when ``encodings``."""
        pipeline = self.core.pipeline
        faces = by_prominence(pipeline.locate(photo.source))
        if encodings:
            faces = pipeline.encode(faces)
        return Detection(photo.label, tuple((face.box, face.confidence, None if face.encoding is None else
                                             tuple(face.encoding.tolist())) for face in faces))

    def nearest_people(self, encoding: np.ndarray, top: int, gallery: Gallery | None = None) -> list[Candidate]:
        """The ``top`` nearest people among the ``index.k`` nearest faces, each scored by their nearest face.

        Faces of inactive people stay in the index and are skipped here: when they crowd the k places,
        look further rather than miss an active person.
        """
        gallery = gallery or self.core.roster
        k = self.core.config.index_k
        while True:
            hits = gallery.nearest_faces(encoding, k)
            people = rank_people(hits)
            if len(people) >= top or all(p is not None for _, p in hits) or k >= gallery.searchable_faces():
                return people[:top]
            k *= 4

    def folder_gallery(self, folder: Path) -> tuple[MemoryRoster, list[PhotoOutcome]]:
        """A roster held in memory from ``folder/<person>/*`` photos, and the photos it refused."""
        from service.roster.memory import MemoryRoster

        people = photos_by_person(folder)
        offered = [(person, Photo.from_path(path)) for person, paths in people.items() for path in paths]
        roster, refused = MemoryRoster(), []
        for (person, photo), single in zip(offered, single_faces(self.core.pipeline, [p for _, p in offered])):
            if isinstance(single, FacerecError):
                refused.append(PhotoOutcome(photo.label, person, REFUSED, reason=single.code, message=single.message))
            else:
                roster.add(person, [single.face.encoding])
        return roster, refused
