"""People and their faces (admin role): /v1/people..."""

from __future__ import annotations

from flask import Blueprint, Response

from service.app import inputs
from service.http.app import state
from service.http.errors import ApiError
from service.http.uploads import int_parameter, json_object, parameter, uploaded_photos

bp = Blueprint("people", __name__, url_prefix="/v1/people")


@bp.before_request
def _admin_only():
    state().auth.require("admin")
    state().require_ready()


@bp.post("")
def create_person():
    body = json_object()
    _only_fields(body, {"id", "name", "metadata"})
    if "id" not in body:
        raise ApiError(400, "bad_request", "'id' (a non-empty string) is required")
    person = state().core.people.create(body["id"], body.get("name"), body.get("metadata"))
    return person.to_json(), 201


@bp.get("")
def list_people():
    page = state().core.people.list(int_parameter("offset", 0), inputs.page_size(int_parameter("limit", 100)),
                                    search=parameter("q"))
    return page.to_json()


@bp.get("/<person_id>")
def get_person(person_id: str):
    return state().core.people.get(person_id).to_json()


@bp.patch("/<person_id>")
def update_person(person_id: str):
    body = json_object()
    _only_fields(body, {"name", "metadata", "active"})
    return state().core.people.update(person_id, **body).to_json()


@bp.delete("/<person_id>")
def delete_person(person_id: str):
    return state().core.people.remove(person_id).to_json()


@bp.get("/<person_id>/export")
def export_person(person_id: str):
    """Everything held about the person, for a data-subject access request."""
    return state().core.people.export(person_id).to_json()


@bp.post("/<person_id>/faces")
def add_faces(person_id: str):
    core = state().core
    core.people.get(person_id)  # 404 before the upload is read
    photos = uploaded_photos()
    if not photos:
        raise ApiError(400, "bad_request", "send one or more photos as multipart/form-data file fields")
    enrollment = core.enrollment.enroll(person_id, photos, create=False)  # a person deleted meanwhile stays deleted
    return enrollment.to_json(), 201 if enrollment.accepted else 200


@bp.get("/<person_id>/faces")
def list_faces(person_id: str):
    return state().core.people.faces(person_id).to_json()


@bp.get("/<person_id>/faces/<int:face_id>/crop.jpg")
def face_crop(person_id: str, face_id: int):
    """The face's aligned 160x160 crop as a JPEG (a thumbnail); it never changes, so it may be cached."""
    jpeg = state().core.people.crop_jpeg(person_id, face_id)
    return Response(jpeg, mimetype="image/jpeg", headers={"Cache-Control": "private, max-age=86400"})


@bp.delete("/<person_id>/faces/<int:face_id>")
def delete_face(person_id: str, face_id: int):
    return state().core.people.remove_face(face_id, person_id).to_json()


def _only_fields(body: dict, allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ApiError(400, "bad_request", f"unknown field(s) {unknown[:10]}; allowed: {sorted(allowed)}")
