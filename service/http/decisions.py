"""Decisions (client or admin role): /v1/verify and /v1/identify. Each one is audited.

A request may ask for its own ``threshold``: any with an admin key, only a stricter one with a
client key (403 otherwise). Every answer says which threshold decided.
"""

from __future__ import annotations

from contextlib import contextmanager

from flask import Blueprint, g

from service.errors import FacerecError
from service.http.app import state
from service.http.errors import ApiError
from service.http.uploads import bool_parameter, int_parameter, number_parameter, one_photo, parameter

bp = Blueprint("decisions", __name__, url_prefix="/v1")


@bp.before_request
def _client_or_admin():
    state().auth.require("client", "admin")
    state().require_ready()


@bp.post("/verify")
def verify_claim():
    person = parameter("person")
    if not person:
        raise ApiError(400, "bad_request", "'person' (the claimed person's id) is required")
    threshold = number_parameter("threshold")
    photo = one_photo()
    core = state().require_ready()
    with _audited("verify", person):
        result = core.recognition.verify(photo, person, threshold, may_loosen=g.role == "admin")
    _decided("verify", "accepted" if result.match else "rejected", person=result.person, distance=result.distance)
    return result.to_json()


@bp.post("/identify")
def identify_photo():
    top_k = int_parameter("top_k", 3)
    all_faces = bool_parameter("all_faces")
    threshold = number_parameter("threshold")
    photo = one_photo()
    core = state().require_ready()
    with _audited("identify", None):
        result = core.recognition.identify(photo, top_k, all_faces, threshold, may_loosen=g.role == "admin")
    for face in result.faces:
        _decided("identify", "match" if face.match else "no_match", person=face.match, distance=face.distance)
    return result.to_json()


@contextmanager
def _audited(endpoint: str, person: str | None):
    """A request that fails before deciding (no face, unknown person, ...) is audited as an error."""
    try:
        yield
    except FacerecError as exc:
        _decided(endpoint, "error", person=person, distance=None, code=exc.code)
        raise


def _decided(endpoint: str, outcome: str, person: str | None, distance: float | None, code: str | None = None):
    facerec = state()
    facerec.metrics.count_decision(endpoint, outcome)
    facerec.core.audit.record(endpoint, outcome, person, distance, code, key_id=g.get("key_id"),
                              request_id=g.get("request_id"))
