"""Reading photos and parameters out of requests (transport only: the values are judged by the
application, ``service.app.inputs``)."""

from __future__ import annotations

import re

from flask import request

from service.app import Photo
from service.http.errors import ApiError

_WHOLE_NUMBER = re.compile(r"[0-9]{1,9}")
_DECIMAL = re.compile(r"[0-9]{1,3}(\.[0-9]{1,12})?|\.[0-9]{1,12}")


def uploaded_photos() -> list[Photo]:
    """Every uploaded file of a multipart request, named by its file name, in the order sent."""
    photos = []
    for position, (field, storage) in enumerate(request.files.items(multi=True)):
        label = (storage.filename or f"{field}[{position}]").replace("\\", "/").rsplit("/", 1)[-1][:200]
        photos.append(Photo(label, storage.read()))
    return photos


def one_photo() -> Photo:
    """The single photo of a verify / identify request (field ``photo``)."""
    photos = uploaded_photos()
    if not photos:
        raise ApiError(400, "bad_request", "send the photo as multipart/form-data, field 'photo'")
    if len(photos) > 1:
        raise ApiError(400, "bad_request", f"one photo per request, got {len(photos)}")
    return photos[0]


def parameter(name: str) -> str | None:
    """A form field or query parameter."""
    value = request.form.get(name)
    return request.args.get(name) if value is None else value


def int_parameter(name: str, default: int) -> int:
    """A whole number in plain ASCII digits (no sign, no spaces), or ``default`` when absent."""
    raw = parameter(name)
    if raw is None:
        return default
    if not _WHOLE_NUMBER.fullmatch(raw):
        raise ApiError(400, "bad_request", f"{name} must be a whole number, not {raw[:20]!r}")
    return int(raw)


def number_parameter(name: str) -> float | None:
    """A decimal number such as 0.65, or None when absent."""
    raw = parameter(name)
    if raw is None:
        return None
    if not _DECIMAL.fullmatch(raw):
        raise ApiError(400, "bad_request", f"{name} must be a decimal number such as 0.65, not {raw[:20]!r}")
    return float(raw)


def bool_parameter(name: str) -> bool:
    raw = (parameter(name) or "").lower()
    if raw in ("", "0", "false", "no"):
        return False
    if raw in ("1", "true", "yes"):
        return True
    raise ApiError(400, "bad_request", f"{name} must be true or false")


def json_object() -> dict:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "bad_request", "the body must be a JSON object (Content-Type: application/json)")
    return body
