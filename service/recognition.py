"""Verification (1:1) and recognition (1:K) over encodings.

The decisions live here, separate from where encodings are stored: :class:`Roster` is the interface a
roster offers (the in-memory one below; the persistent one replaces it without touching the rules).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Protocol

import numpy as np

from service.encoder import l2_normalize
from service.errors import UnknownPerson

NOT_IN_DATABASE = "not in the database"


@dataclass(frozen=True)
class Verification:
    person: str
    distance: float
    threshold: float

    @property
    def accepted(self) -> bool:
        return self.distance < self.threshold


@dataclass(frozen=True)
class Candidate:
    person: str
    distance: float


@dataclass(frozen=True)
class Identification:
    """The nearest people, nearest first; ``person`` is None when nobody is under the threshold."""

    candidates: tuple[Candidate, ...]
    threshold: float

    @property
    def distance(self) -> float:
        return self.candidates[0].distance if self.candidates else float("inf")

    @property
    def person(self) -> str | None:
        return self.candidates[0].person if self.distance < self.threshold else None

    @property
    def label(self) -> str:
        return self.person if self.person is not None else NOT_IN_DATABASE


class Roster(Protocol):
    def encodings_of(self, person: str) -> np.ndarray: ...

    def nearest_people(self, encoding: np.ndarray, top: int) -> list[Candidate]: ...


def l2_distances(encoding: np.ndarray, others: np.ndarray) -> np.ndarray:
    """True (not squared) L2 distance from one encoding to each row of ``others``."""
    return np.linalg.norm(np.asarray(others, np.float32) - np.asarray(encoding, np.float32), axis=-1)


def verify(encoding: np.ndarray, person: str, roster: Roster, threshold: float = 0.7) -> Verification:
    """Is this the claimed person? Distance to the nearest of their enrolled encodings."""
    distance = float(l2_distances(encoding, roster.encodings_of(person)).min())
    return Verification(person, distance, threshold)


def identify(encoding: np.ndarray, roster: Roster, threshold: float = 0.7, top: int = 5) -> Identification:
    """Who is this? The ``top`` nearest people, each scored by their nearest encoding."""
    return Identification(tuple(roster.nearest_people(encoding, top)), threshold)


class MemoryRoster:
    """People and their encodings held in memory; enough for a demo or a one-off check."""

    def __init__(self):
        self._people: dict[str, np.ndarray] = {}

    def add(self, person: str, encodings: Iterable[np.ndarray]) -> None:
        new = l2_normalize(np.atleast_2d(np.asarray(list(encodings), np.float32)))
        old = self._people.get(person)
        self._people[person] = new if old is None else np.concatenate([old, new])

    def remove(self, person: str) -> None:
        if self._people.pop(person, None) is None:
            raise UnknownPerson(f"{person!r} is not enrolled")

    @property
    def people(self) -> list[str]:
        return sorted(self._people)

    def __len__(self) -> int:
        return len(self._people)

    def encodings_of(self, person: str) -> np.ndarray:
        try:
            return self._people[person]
        except KeyError:
            raise UnknownPerson(f"{person!r} is not enrolled") from None

    def nearest_people(self, encoding: np.ndarray, top: int) -> list[Candidate]:
        scored = [Candidate(p, float(l2_distances(encoding, e).min())) for p, e in self._people.items()]
        return sorted(scored, key=lambda c: c.distance)[:top]
