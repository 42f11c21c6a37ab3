"""The record of decisions (admin role): GET /v1/audit?since=&until=&person=&offset=&limit=."""

from __future__ import annotations

from flask import Blueprint

from service.app import inputs
from service.http.app import state
from service.http.uploads import int_parameter, parameter

bp = Blueprint("audit", __name__, url_prefix="/v1")


@bp.before_request
def _admin_only():
    state().auth.require("admin")
    state().require_ready()


@bp.get("/audit")
def read_audit():
    """Decisions in [since, until) (ISO 8601; no zone means UTC), of one person when given, newest first."""
    since, until, person = (parameter(name) for name in ("since", "until", "person"))
    page = state().core.audit.list(
        since=None if since is None else inputs.moment(since), until=None if until is None else inputs.moment(until),
        person=person, offset=int_parameter("offset", 0), limit=int_parameter("limit", 100))
    return page.to_json()
