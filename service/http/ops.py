"""Operations endpoints, no key needed: /healthz, /readyz, /metrics, /openapi.json."""

from __future__ import annotations

from flask import Blueprint, Response
from sqlalchemy import func, select

from service.http.app import state
from service.http.openapi import document

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz():
    return {"status": "alive"}


@bp.get("/readyz")
def readyz():
    """Ready when the model is loaded and this worker's index holds exactly the database's faces."""
    facerec = state()
    if not facerec.ready:
        return {"ready": False, "model_loaded": False, "index_consistent": False}, 503
    facerec.sync()
    faces, generation = _database_faces(facerec)
    roster = facerec.roster
    consistent = generation == roster.generation and faces == len(roster.index)
    body = {"ready": consistent, "model_loaded": True, "index_consistent": consistent, "faces": faces,
            "indexed": len(roster.index), "generation": generation}
    return body, 200 if consistent else 503


@bp.get("/metrics")
def metrics():
    facerec = state()
    gauges = {}
    if facerec.ready:
        faces, _ = _database_faces(facerec)
        gauges = {"facerec_roster_people": ("People in the roster.", facerec.roster.count_people()),
                  "facerec_roster_faces": ("Faces searchable with this model.", faces)}
    return Response(facerec.metrics.render(gauges), mimetype="text/plain; version=0.0.4")


@bp.get("/openapi.json")
def openapi():
    return document()


def _database_faces(facerec) -> tuple[int, int]:
    from service.store import Face, current_generation

    with facerec.roster.Session() as session, session.begin():
        generation = current_generation(session)
        faces = session.scalar(select(func.count(Face.id)).where(Face.model_id == facerec.roster.model_id))
    return faces or 0, generation
