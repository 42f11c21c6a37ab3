"""Decisions (client or admin role): /v1/verify and /v1/identify. Each one is audited."""

from __future__ import annotations

from contextlib import contextmanager

from flask import Blueprint, g

from service.errors import FacerecError, NoFace
from service.http.app import state
from service.http.errors import ApiError
from service.http.uploads import bool_parameter, int_parameter, one_photo, parameter

bp = Blueprint("decisions", __name__, url_prefix="/v1")
MAX_TOP_K = 50


@bp.before_request
def _client_or_admin():
    state().auth.require("client", "admin")
    state().require_ready()


@bp.post("/verify")
def verify_claim():
    from service.recognition import verify

    person = (parameter("person") or "").strip()
    if not person:
        raise ApiError(400, "bad_request", "'person' (the claimed person's id) is required")
    photo = one_photo()
    facerec = state()
    with _audited("verify", person):
        facerec.require_ready()  # no index catch-up: verify reads the person's encodings from the database
        encoding = facerec.pipeline.single_face(photo).encoding
        result = verify(encoding, person, facerec.roster, facerec.config.threshold)
    outcome = "accepted" if result.accepted else "rejected"
    _decided("verify", outcome, person=person, distance=result.distance)
    return {"person": person, "distance": round(result.distance, 6), "threshold": result.threshold,
            "match": result.accepted}


@bp.post("/identify")
def identify_photo():
    from service.recognition import identify

    top_k = int_parameter("top_k", 3, 1, MAX_TOP_K)
    all_faces = bool_parameter("all_faces")
    photo = one_photo()
    facerec = state()
    with _audited("identify", None):
        facerec.sync()
        located = facerec.pipeline.locate(photo)
        if not located:
            raise NoFace("no face found in the photo")
        faces = facerec.pipeline.encode(located if all_faces else located[:1])
        answers = [(face, identify(face.encoding, facerec.roster, facerec.config.threshold, top_k))
                   for face in faces]
    report = []
    for face, result in answers:
        distance = result.distance if result.candidates else None
        _decided("identify", "match" if result.person else "no_match", person=result.person, distance=distance)
        report.append({"box": [int(round(v)) for v in face.box], "match": result.person,
                       "distance": None if distance is None else round(distance, 6),
                       "candidates": [{"person": c.person, "distance": round(c.distance, 6)}
                                      for c in result.candidates]})
    return {"faces": report, "faces_found": len(located), "threshold": facerec.config.threshold}


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
    facerec.audit.record(endpoint=endpoint, request_id=g.get("request_id"), key_id=g.get("key_id"),
                         outcome=outcome, person=person,
                         distance=None if distance is None else round(distance, 6), code=code)
