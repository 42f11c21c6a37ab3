"""JSON errors: every failure is ``{"error": {"code": ..., "message": ...}}`` with its HTTP status.

An unexpected exception is logged with the request id and answered 500 as JSON: no traceback ever
reaches a client.
"""

from __future__ import annotations

import logging

from flask import Flask, g, jsonify
from werkzeug.exceptions import HTTPException

from service.app.results import error_json
from service.errors import FacerecError

log = logging.getLogger(__name__)

# The application's error codes (service.errors) -> HTTP status.
STATUS_BY_CODE = {
    "bad_request": 400, "forbidden": 403, "unknown_person": 404, "unknown_face": 404, "person_exists": 409,
    "not_an_image": 415, "too_large": 413,
    "empty": 422, "truncated": 422, "unreadable": 422, "not_found": 422,
    "no_face": 422, "multiple_faces": 422,
    "model_error": 503, "config_error": 500,
}
HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "unknown_route",
              405: "method_not_allowed", 413: "too_large", 415: "unsupported_media_type"}
# Every code an error body may carry.
ERROR_CODES = (set(STATUS_BY_CODE) | set(HTTP_CODES.values()) | {"not_ready", "internal"}
               | {"uri_too_long", "headers_too_large", "expectation_failed", "not_implemented"})  # gunicorn's


class ApiError(Exception):
    """An error the API answers as is (bad parameters, missing key, ...)."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error_response(status: int, code: str, message: str):
    response = jsonify(error_json(code, message))
    response.status_code = status
    return response


def _too_large(app: Flask) -> str:
    """Which limit a 413 hit: the whole body's, or one form field's."""
    from flask import request

    body_limit = app.config.get("MAX_CONTENT_LENGTH") or 0
    if request.content_length is not None and request.content_length <= body_limit:
        return f"a form field is over the {app.config['MAX_FORM_MEMORY_SIZE'] // 1024} KB the parser holds"
    return f"the request body is over the {body_limit / 2**20:g} MB limit"


def install_error_handlers(app: Flask) -> None:
    """Map every exception to the JSON error shape."""

    @app.errorhandler(ApiError)
    def _api(exc: ApiError):
        return error_response(exc.status, exc.code, exc.message)

    @app.errorhandler(FacerecError)
    def _domain(exc: FacerecError):
        return error_response(STATUS_BY_CODE.get(exc.code, 400), exc.code, exc.message)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        status = exc.code or 500
        message = _too_large(app) if status == 413 else exc.description or exc.name
        response = error_response(status, HTTP_CODES.get(status, exc.name.lower().replace(" ", "_")), message)
        if getattr(exc, "valid_methods", None):  # a 405 says what is allowed
            response.headers["Allow"] = ", ".join(sorted(exc.valid_methods))
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        request_id = g.get("request_id", "-")
        log.exception("unexpected error, request id %s", request_id)
        return error_response(500, "internal", f"unexpected error; request id {request_id}")
