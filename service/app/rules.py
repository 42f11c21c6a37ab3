"""The decision rules, on encodings and boxes only (numpy, no model): one place for each.

- A claim is accepted, and a match made, when the L2 distance is strictly below the threshold.
- A person's distance is the distance of their nearest enrolled face.
- Where one face is needed, the dominant face counts: the largest, at least twice the area of the
  next (ties broken by closeness to the photo's centre); otherwise the photo is ``multiple_faces``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Iterable

import numpy as np

from service.errors import MultipleFaces, NoFace
from service.pipeline.faces import AlignedFace, PhotoFaces

if TYPE_CHECKING:
    from service.app.results import Candidate

DOMINANCE = 2.0


def accepts(distance: float, threshold: float) -> bool:
    """Accept (same person) when the distance is strictly below the threshold."""
    return distance < threshold


def l2_distances(encoding: np.ndarray, others: np.ndarray) -> np.ndarray:
    """True (not squared) L2 distance from one encoding to each row of ``others``."""
    return np.linalg.norm(np.asarray(others, np.float32) - np.asarray(encoding, np.float32), axis=-1)


def person_distance(encoding: np.ndarray, their_encodings: np.ndarray) -> float:
    """A person's distance from a probe: that of their nearest enrolled face."""
    return float(l2_distances(encoding, their_encodings).min())


def rank_people(hits: Iterable[tuple[float, str | None]]) -> list[Candidate]:
    """People in order of their nearest face, from faces given nearest first as (distance, person).

    A face whose person is None (inactive, or gone) is skipped.
    """
    from service.app.results import Candidate  # the result types use these rules too

    best: dict[str, float] = {}
    for distance, person in hits:
        if person is not None and person not in best:
            best[person] = float(distance)
    return [Candidate(person, distance) for person, distance in best.items()]


def by_prominence(photo: PhotoFaces) -> list[AlignedFace]:
    """The photo's faces, largest first; equal areas by closeness to the photo's centre."""
    cx, cy = photo.width / 2, photo.height / 2

    def key(face: AlignedFace) -> tuple[float, float]:
        x, y, w, h = face.box
        return -face.area, math.hypot(x + w / 2 - cx, y + h / 2 - cy)

    return sorted(photo.faces, key=key)


def dominant_face(photo: PhotoFaces, name: str) -> AlignedFace:
    """The one face that counts in a photo; NoFace, or MultipleFaces when none dominates."""
    faces = by_prominence(photo)
    if not faces:
        raise NoFace(f"no face found in {name}")
    if len(faces) > 1 and faces[0].area < DOMINANCE * faces[1].area:
        raise MultipleFaces(f"{len(faces)} faces found in {name} and none is at least twice the size of the "
                            "others; use a photo where one face clearly dominates")
    return faces[0]
