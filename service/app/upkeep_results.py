"""What the upkeep commands answer (reindex, readiness, backup, restore), one JSON form each, as in
:mod:`service.app.results`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReindexReport:
    vectors: int
    generation: int
    seconds: float
    build_seconds: float
    reembedded: int = 0
    missing_crops: tuple[int, ...] = ()
    kind: str = "flat"

    @property
    def vectors_per_second(self) -> int | None:
        return round(self.vectors / self.build_seconds) if self.build_seconds > 0 else None

    def to_json(self) -> dict:
        return {"vectors": self.vectors, "generation": self.generation, "seconds": round(self.seconds, 2),
                "vectors_per_second": self.vectors_per_second, "reembedded": self.reembedded,
                "missing_crops": list(self.missing_crops), "kind": self.kind}


@dataclass(frozen=True)
class RosterStatus:
    """Whether this process can answer: model loaded, and its index holding exactly the database's faces."""

    model_loaded: bool
    faces: int
    indexed: int
    generation: int
    index_generation: int

    @property
    def index_consistent(self) -> bool:
        return self.generation == self.index_generation and self.faces == self.indexed

    @property
    def ready(self) -> bool:
        return self.model_loaded and self.index_consistent

    def to_json(self) -> dict:
        return {"ready": self.ready, "model_loaded": self.model_loaded, "index_consistent": self.index_consistent,
                "faces": self.faces, "indexed": self.indexed, "generation": self.generation}


@dataclass(frozen=True)
class BackupReport:
    """A backup written (``restored`` False) or restored (True): the file and what it holds."""

    file: str
    restored: bool
    people: int
    faces: int
    crops: int
    audit_events: int
    seconds: float

    def to_json(self) -> dict:
        return {"restored" if self.restored else "backup": self.file, "people": self.people, "faces": self.faces,
                "crops": self.crops, "audit_events": self.audit_events, "seconds": round(self.seconds, 2)}
