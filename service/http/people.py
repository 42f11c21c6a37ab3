"""People and their faces (admin role): /v1/people..."""

from __future__ import annotations

from flask import Blueprint
from sqlalchemy import select

from service.errors import UnknownFace, UnknownPerson
from service.http.app import state
from service.http.errors import ApiError
from service.http.uploads import int_parameter, json_object, uploaded_photos
from service.store import Person

bp = Blueprint("people", __name__, url_prefix="/v1/people")

# Roster refusal codes -> the API's: every way a file can fail to be an image is "unreadable".
REFUSAL_CODES = {"not_found": "unreadable", "empty": "unreadable", "not_an_image": "unreadable",
                 "truncated": "unreadable", "unreadable": "unreadable", "too_large": "too_large",
                 "no_face": "no_face", "multiple_faces": "multiple_faces", "duplicate": "duplicate"}
MAX_PAGE = 1000


@bp.before_request
def _admin_only():
    state().auth.require("admin")
    state().require_ready()


@bp.post("")
def create_person():
    body = json_object()
    _only_fields(body, {"id", "name", "metadata"})
    person_id = body.get("id")
    if not isinstance(person_id, str) or not person_id.strip():
        raise ApiError(400, "bad_request", "'id' (a non-empty string) is required")
    name, metadata = _name(body), _metadata(body)
    person = state().roster.add_person(person_id, name, metadata)
    return person_json(person, 0), 201


@bp.get("")
def list_people():
    offset = int_parameter("offset", 0, 0, 2**31)
    limit = int_parameter("limit", 100, 1, MAX_PAGE)
    roster = state().roster
    people = [person_json(p, n) for p, n in roster.list_people(offset, limit)]
    return {"people": people, "total": roster.count_people(), "offset": offset, "limit": limit}


@bp.get("/<person_id>")
def get_person(person_id: str):
    roster = state().roster
    return person_json(roster.get_person(person_id), len(roster.faces_of(person_id)))


@bp.patch("/<person_id>")
def update_person(person_id: str):
    body = json_object()
    _only_fields(body, {"name", "metadata", "active"})
    if "active" in body and not isinstance(body["active"], bool):
        raise ApiError(400, "bad_request", "'active' must be true or false")
    changes = {"name": _name(body), "attributes": _metadata(body), "active": body.get("active")}
    roster = state().roster
    # No index change (recognition filters on `active` in the database), so no generation bump.
    with roster.Session() as session, session.begin():
        person = session.scalar(select(Person).where(Person.external_id == person_id))
        if person is None:
            raise UnknownPerson(f"{person_id!r} is not enrolled")
        for field, key in (("name", "name"), ("attributes", "metadata"), ("active", "active")):
            if key in body:
                setattr(person, field, changes[field])
    return person_json(person, len(roster.faces_of(person_id)))


@bp.delete("/<person_id>")
def delete_person(person_id: str):
    with state().writing() as roster:
        removed = roster.remove_person(person_id)
    return {"id": person_id, "deleted": True, "faces_removed": removed}


@bp.post("/<person_id>/faces")
def add_faces(person_id: str):
    photos = uploaded_photos()
    if not photos:
        raise ApiError(400, "bad_request", "send one or more photos as multipart/form-data file fields")
    from service.roster import Photo

    facerec = state()
    facerec.roster.get_person(person_id)  # 404 before any photo is decoded
    with facerec.writing() as roster:
        outcomes = roster.enroll(facerec.pipeline, person_id, [Photo(label, data) for label, data in photos],
                                 create=False)  # a person deleted meanwhile stays deleted
    answers = [_outcome_json(o) for o in outcomes]
    accepted = sum(a["status"] == "accepted" for a in answers)
    body = {"person": person_id, "accepted": accepted, "refused": len(answers) - accepted, "photos": answers}
    return body, 201 if accepted else 200


@bp.get("/<person_id>/faces")
def list_faces(person_id: str):
    return {"person": person_id, "faces": [face_json(f) for f in state().roster.faces_of(person_id)]}


@bp.delete("/<person_id>/faces/<int:face_id>")
def delete_face(person_id: str, face_id: int):
    facerec = state()
    if face_id not in {f.id for f in facerec.roster.faces_of(person_id)}:
        raise UnknownFace(f"{person_id!r} has no face {face_id}")
    with facerec.writing() as roster:
        roster.remove_face(face_id)
    return {"person": person_id, "face_id": face_id, "deleted": True}


# ---- JSON shapes -----------------------------------------------------------------------------------

def person_json(person, faces: int) -> dict:
    return {"id": person.external_id, "name": person.name, "metadata": person.attributes,
            "active": person.active, "faces": faces,
            "created_at": person.created_at.isoformat() if person.created_at else None,
            "updated_at": person.updated_at.isoformat() if person.updated_at else None}


def face_json(face) -> dict:
    return {"id": face.id, "box": [face.box_x, face.box_y, face.box_w, face.box_h], "score": face.score,
            "model": face.model_id, "photo_sha256": face.photo_sha256,
            "created_at": face.created_at.isoformat() if face.created_at else None}


def _outcome_json(outcome) -> dict:
    if outcome.status == "enrolled":
        return {"photo": outcome.photo, "status": "accepted", "face_id": outcome.face_id}
    # "skipped" is the roster's word for a photo this person already has: the API refuses it.
    return {"photo": outcome.photo, "status": "refused", "reason": REFUSAL_CODES.get(outcome.code, "unreadable"),
            "message": outcome.message}


def _only_fields(body: dict, allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ApiError(400, "bad_request", f"unknown field(s) {unknown}; allowed: {sorted(allowed)}")


def _name(body: dict) -> str | None:
    name = body.get("name")
    if name is not None and (not isinstance(name, str) or len(name) > 256):
        raise ApiError(400, "bad_request", "'name' must be a string of at most 256 characters")
    return name


def _metadata(body: dict) -> dict | None:
    metadata = body.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise ApiError(400, "bad_request", "'metadata' must be a JSON object")
    return metadata
