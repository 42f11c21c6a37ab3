"""A roster held in memory: people and their encodings, for a photo folder matched on the fly, the
demo of an exercise, or a benchmark. It answers the same two questions as the persistent roster."""

from __future__ import annotations

from typing import Iterable

import numpy as np

from service.errors import UnknownPerson


class MemoryRoster:
    def __init__(self):
        self._people: dict[str, np.ndarray] = {}

    def add(self, person: str, encodings: Iterable[np.ndarray]) -> None:
        new = np.atleast_2d(np.asarray(list(encodings), np.float32))
        old = self._people.get(person)
        self._people[person] = new if old is None else np.concatenate([old, new])

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

    def nearest_faces(self, encoding: np.ndarray, k: int) -> list[tuple[float, str | None]]:
        """The ``k`` nearest encodings as (distance, person), nearest first."""
        if not self._people:
            return []
        owners = [person for person, rows in self._people.items() for _ in range(len(rows))]
        stacked = np.concatenate(list(self._people.values()))
        distances = np.linalg.norm(stacked - np.asarray(encoding, np.float32), axis=1)
        order = np.argsort(distances, kind="stable")[:k]
        return [(float(distances[n]), owners[n]) for n in order]

    def searchable_faces(self) -> int:
        return sum(len(rows) for rows in self._people.values())
