"""What the application answers, and the one JSON form of each answer.

Every front end (the CLI's ``--json``, the HTTP API, the demo) prints these ``to_json()`` forms
unchanged, so a photo gets the same answer whichever way it came in. Numbers are rounded here, once:
distances to 6 decimals, boxes to 1 (pixels), detector confidences to 4.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from service.app.rules import accepts

# ---- the vocabulary ----------------------------------------------------------------------------------

ACCEPTED, REFUSED = "accepted", "refused"
ENROLLMENT_STATUSES = (ACCEPTED, REFUSED)
# Why a photo was refused. The first seven apply to every front end; not_found and unreadable only to
# photos named by a path (a file that is not there, or cannot be read); unknown_person when the person
# was deleted while their photos were being enrolled.
REFUSAL_REASONS = ("not_an_image", "truncated", "empty", "too_large", "no_face", "multiple_faces", "duplicate",
                   "not_found", "unreadable", "unknown_person")
# Decision outcomes, as the audit log and the metrics count them.
VERIFY_OUTCOMES = ("accepted", "rejected", "error")
IDENTIFY_OUTCOMES = ("match", "no_match", "error")

DISTANCE_DECIMALS, BOX_DECIMALS, CONFIDENCE_DECIMALS = 6, 1, 4


def distance_json(distance: float | None) -> float | None:
    return None if distance is None else round(float(distance), DISTANCE_DECIMALS)


def box_json(box) -> list[float]:
    return [round(float(v), BOX_DECIMALS) for v in box]


def confidence_json(confidence: float | None) -> float | None:
    return None if confidence is None else round(float(confidence), CONFIDENCE_DECIMALS)


def time_json(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def finite_json(value: Any) -> Any:
    """``value`` with every NaN or infinite number replaced by None: strict JSON can hold it."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(item) for item in value]
    return value


def error_json(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


# ---- decisions ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Candidate:
    """A person and their distance: the distance of their nearest enrolled face."""

    person: str
    distance: float

    def to_json(self) -> dict:
        return {"person": self.person, "distance": distance_json(self.distance)}


@dataclass(frozen=True)
class FaceMatch:
    """One face of a photo and the nearest people; ``match`` is None when nobody is under the threshold."""

    box: tuple[float, float, float, float]
    confidence: float | None
    candidates: tuple[Candidate, ...]
    threshold: float

    @property
    def distance(self) -> float | None:
        return self.candidates[0].distance if self.candidates else None

    @property
    def match(self) -> str | None:
        nearest = self.distance
        return self.candidates[0].person if nearest is not None and accepts(nearest, self.threshold) else None

    def to_json(self) -> dict:
        return {"box": box_json(self.box), "confidence": confidence_json(self.confidence), "match": self.match,
                "distance": distance_json(self.distance), "candidates": [c.to_json() for c in self.candidates]}


@dataclass(frozen=True)
class Identification:
    """Who is in a photo: the main face (or every face), each with the nearest people."""

    photo: str | None
    threshold: float
    faces_found: int
    faces: tuple[FaceMatch, ...]

    @property
    def matched(self) -> bool:
        return any(face.match is not None for face in self.faces)

    def to_json(self) -> dict:
        return {"photo": self.photo, "threshold": self.threshold, "faces_found": self.faces_found,
                "faces": [face.to_json() for face in self.faces]}


@dataclass(frozen=True)
class Verification:
    """Is the face in a photo the claimed person: the distance to their nearest enrolled face."""

    photo: str | None
    person: str
    distance: float
    threshold: float
    box: tuple[float, float, float, float]
    confidence: float | None
    faces_found: int

    @property
    def match(self) -> bool:
        return accepts(self.distance, self.threshold)

    def to_json(self) -> dict:
        return {"photo": self.photo, "person": self.person, "match": self.match,
                "distance": distance_json(self.distance), "threshold": self.threshold, "box": box_json(self.box),
                "confidence": confidence_json(self.confidence), "faces_found": self.faces_found}


@dataclass(frozen=True)
class Detection:
    """Every face the detector finds in a photo (nothing stored, nothing decided): box, confidence and,
    when asked for, the encoding."""

    photo: str | None
    faces: tuple[tuple[tuple[float, float, float, float], float | None, tuple[float, ...] | None], ...]

    def to_json(self) -> dict:
        return {"photo": self.photo, "faces": [
            {"box": box_json(box), "confidence": confidence_json(confidence),
             "encoding": None if encoding is None else [round(float(v), 7) for v in encoding]}
            for box, confidence, encoding in self.faces]}


# ---- enrollment --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PhotoOutcome:
    """What happened to one offered photo: accepted with its new face id, or refused with a reason.

    A ``duplicate`` refusal carries the id of the face the same photo already gave this person.
    """

    photo: str
    person: str
    status: str
    face_id: int | None = None
    reason: str | None = None
    message: str | None = None
    faces_found: int | None = None

    @property
    def enrolled(self) -> bool:
        """The photo is (now or already) one of the person's faces."""
        return self.status == ACCEPTED or self.reason == "duplicate"

    def to_json(self) -> dict:
        return {"photo": self.photo, "person": self.person, "status": self.status, "face_id": self.face_id,
                "reason": self.reason, "message": self.message, "faces_found": self.faces_found}


@dataclass(frozen=True)
class Enrollment:
    person: str
    photos: tuple[PhotoOutcome, ...]

    @property
    def accepted(self) -> int:
        return sum(p.status == ACCEPTED for p in self.photos)

    def to_json(self) -> dict:
        return {"person": self.person, "accepted": self.accepted, "refused": len(self.photos) - self.accepted,
                "photos": [p.to_json() for p in self.photos]}


@dataclass
class ImportSummary:
    folder: str
    people: int = 0
    photos: int = 0
    accepted: int = 0
    duplicate: int = 0
    refused: dict[str, int] = field(default_factory=dict)  # reason -> photos, duplicates excepted
    seconds: float = 0.0

    def count(self, outcome: PhotoOutcome) -> None:
        if outcome.status == ACCEPTED:
            self.accepted += 1
        elif outcome.reason == "duplicate":
            self.duplicate += 1
        else:
            self.refused[outcome.reason] = self.refused.get(outcome.reason, 0) + 1

    def to_json(self) -> dict:
        return {"summary": {"folder": self.folder, "people": self.people, "photos": self.photos,
                            "accepted": self.accepted, "duplicate": self.duplicate,
                            "refused": sum(self.refused.values()), "refused_by_reason": dict(sorted(self.refused.items())),
                            "seconds": round(self.seconds, 1)}}


# ---- people and faces --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Person:
    id: str
    name: str | None
    metadata: Any
    active: bool
    faces: int
    created_at: datetime | None
    updated_at: datetime | None

    @classmethod
    def from_row(cls, row, faces: int) -> "Person":
        return cls(row.external_id, row.name, row.attributes, row.active, faces, row.created_at, row.updated_at)

    def to_json(self) -> dict:
        return {"id": self.id, "name": self.name, "metadata": self.metadata, "active": self.active,
                "faces": self.faces, "created_at": time_json(self.created_at), "updated_at": time_json(self.updated_at)}


@dataclass(frozen=True)
class PeoplePage:
    people: tuple[Person, ...]
    total: int
    offset: int
    limit: int | None

    def to_json(self) -> dict:
        return {"people": [p.to_json() for p in self.people], "total": self.total, "offset": self.offset,
                "limit": self.limit}


@dataclass(frozen=True)
class EnrolledFace:
    """One stored face: where it was in its photo, the detector's confidence, the model that encoded it."""

    id: int
    person: str
    box: tuple[float, float, float, float]
    confidence: float | None
    model: str
    photo_sha256: str
    created_at: datetime | None

    @classmethod
    def from_row(cls, row, person: str) -> "EnrolledFace":
        return cls(row.id, person, (row.box_x, row.box_y, row.box_w, row.box_h), row.score, row.model_id,
                   row.photo_sha256, row.created_at)

    def to_json(self) -> dict:
        return {"id": self.id, "person": self.person, "box": box_json(self.box),
                "confidence": confidence_json(self.confidence), "model": self.model,
                "photo_sha256": self.photo_sha256, "created_at": time_json(self.created_at)}


@dataclass(frozen=True)
class FaceList:
    person: str
    faces: tuple[EnrolledFace, ...]

    def to_json(self) -> dict:
        return {"person": self.person, "faces": [f.to_json() for f in self.faces]}


@dataclass(frozen=True)
class Deletion:
    """What a delete removed: a whole person (``face_id`` None) or one face."""

    deleted: str  # "person" or "face"
    person: str
    face_id: int | None
    faces_removed: int
    audit_events_erased: int = 0  # only with audit.erase_on_delete, and only for a person

    def to_json(self) -> dict:
        return {"deleted": self.deleted, "person": self.person, "face_id": self.face_id,
                "faces_removed": self.faces_removed, "audit_events_erased": self.audit_events_erased}


# ---- the audit ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AuditEvent:
    """One recorded decision."""

    id: int
    time: datetime
    endpoint: str
    outcome: str
    person: str | None
    distance: float | None
    code: str | None
    key_id: str | None
    request_id: str | None

    @classmethod
    def from_row(cls, row) -> "AuditEvent":
        return cls(row.id, row.time, row.endpoint, row.outcome, row.person, row.distance, row.code, row.key_id,
                   row.request_id)

    def to_json(self) -> dict:
        return {"id": self.id, "time": self.time.isoformat(timespec="milliseconds"), "endpoint": self.endpoint,
                "outcome": self.outcome, "person": self.person, "distance": distance_json(self.distance),
                "code": self.code, "key_id": self.key_id, "request_id": self.request_id}


@dataclass(frozen=True)
class AuditPage:
    events: tuple[AuditEvent, ...]
    total: int
    offset: int
    limit: int

    def to_json(self) -> dict:
        return {"events": [e.to_json() for e in self.events], "total": self.total, "offset": self.offset,
                "limit": self.limit}


@dataclass(frozen=True)
class AuditPurge:
    purged: int
    before: datetime

    def to_json(self) -> dict:
        return {"purged": self.purged, "before": self.before.isoformat(timespec="seconds")}


# ---- data protection ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class ExportedFace:
    """A face with everything kept of it: the encoding and the aligned crop (PNG, as stored)."""

    face: EnrolledFace
    encoding: tuple[float, ...]
    crop_png: bytes | None

    def to_json(self) -> dict:
        import base64

        return {**self.face.to_json(), "encoding": list(self.encoding),
                "crop_png_base64": None if self.crop_png is None else base64.b64encode(self.crop_png).decode()}


@dataclass(frozen=True)
class PersonExport:
    """Everything the service holds about one person (a data-subject access request): the record, each
    face with its encoding and crop, and every recorded decision that named them."""

    person: Person
    faces: tuple[ExportedFace, ...]
    audit_events: tuple[AuditEvent, ...]
    exported_at: datetime

    def to_json(self) -> dict:
        return {"person": self.person.to_json(), "faces": [f.to_json() for f in self.faces],
                "audit_events": [e.to_json() for e in self.audit_events], "exported_at": time_json(self.exported_at)}

