"""The web console (/console) and the interactive API documentation (/docs), served by the service
itself: every script, style and font comes from this process (the page's own files, and Swagger UI
from the pip-installed flask-swagger-ui package), nothing from elsewhere.

The pages are static; they sign in with an API key kept in the browser tab and call the /v1 API like
any other client. A Content-Security-Policy forbids inline scripts and any other origin.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, send_from_directory

bp = Blueprint("console", __name__)

STATIC = Path(__file__).resolve().parent / "static"
POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
          "connect-src 'self'; media-src 'self' blob:; object-src 'none'; base-uri 'none'; "
          "form-action 'self'; frame-ancestors 'none'")
CACHE_SECONDS = 300


def swagger_ui_dist() -> Path:
    import flask_swagger_ui

    return Path(flask_swagger_ui.__file__).resolve().parent / "dist"


@bp.after_request
def _headers(response):
    response.headers["Content-Security-Policy"] = POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.get("/console")
def console():
    return send_from_directory(STATIC, "console.html", max_age=0)


@bp.get("/console/static/<path:name>")
def console_file(name: str):
    return send_from_directory(STATIC, name, max_age=CACHE_SECONDS)


@bp.get("/docs")
def docs():
    return send_from_directory(STATIC, "docs.html", max_age=0)


@bp.get("/docs/static/<path:name>")
def docs_file(name: str):
    return send_from_directory(STATIC, name, max_age=CACHE_SECONDS)


@bp.get("/docs/swagger-ui/<path:name>")
def swagger_ui_file(name: str):
    return send_from_directory(swagger_ui_dist(), name, max_age=CACHE_SECONDS)
