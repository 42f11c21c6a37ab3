"""Who is asking (any valid key): GET /v1/whoami, so a front end can offer what the key may do."""

from __future__ import annotations

from flask import Blueprint, g

from service.http.app import state

bp = Blueprint("account", __name__, url_prefix="/v1")


@bp.get("/whoami")
def whoami():
    """The key's id and role, and the configured threshold (a client key may only tighten it)."""
    facerec = state()
    facerec.auth.require("client", "admin")
    return {"key_id": g.key_id, "role": g.role, "threshold": facerec.config.threshold}
