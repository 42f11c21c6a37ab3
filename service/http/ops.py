"""Operations endpoints, no key needed: /healthz, /readyz, /metrics, /openapi.json."""

from __future__ import annotations

from flask import Blueprint, Response

from service.http.app import state
from service.http.openapi import document

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz():
    return {"status": "alive"}


@bp.get("/readyz")
def readyz():
    """Ready when the model is loaded and this worker's index holds exactly the database's faces."""
    status = state().core.upkeep.status()
    return status.to_json(), 200 if status.ready else 503


@bp.get("/metrics")
def metrics():
    facerec = state()
    gauges = {}
    if facerec.ready:
        status = facerec.core.upkeep.status()
        gauges = {"facerec_roster_people": ("People in the roster.", facerec.core.people.count()),
                  "facerec_roster_faces": ("Faces searchable with this model.", status.faces),
                  # Non-zero after a model change (precision, head, weights) until `facerec reindex --reembed`.
                  "facerec_roster_faces_other_models": ("Faces encoded by another model, not searchable.",
                                                        facerec.core.roster.count_stale_faces())}
    return Response(facerec.metrics.render(gauges), mimetype="text/plain; version=0.0.4")


@bp.get("/openapi.json")
def openapi():
    return document()
