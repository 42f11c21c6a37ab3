"""Reading photos and parameters out of requests."""

from __future__ import annotations

from flask import request

from service.http.errors import ApiError


def uploaded_photos() -> list[tuple[str, bytes]]:
    """Every uploaded file of a multipart request, as (label, bytes), in the order sent."""
    photos = []
    for position, (field, storage) in enumerate(request.files.items(multi=True)):
        label = (storage.filename or f"{field}[{position}]").replace("\\", "/").rsplit("/", 1)[-1][:200]
        photos.append((label, storage.read()))
    return photos


def one_photo() -> bytes:
    """The single photo of a verify / identify request (field ``photo``)."""
    photos = uploaded_photos()
    if not photos:
        raise ApiError(400, "bad_request", "send the photo as multipart/form-data, field 'photo'")
    if len(photos) > 1:
        raise ApiError(400, "bad_request", f"one photo per request, got {len(photos)}")
    return photos[0][1]


def parameter(name: str, default: str | None = None) -> str | None:
    """A form field or query parameter."""
    value = request.form.get(name)
    return request.args.get(name, default) if value is None else value


def int_parameter(name: str, default: int, low: int, high: int) -> int:
    raw = parameter(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "bad_request", f"{name} must be an integer, not {raw[:20]!r}") from None
    if not low <= value <= high:
        raise ApiError(400, "bad_request", f"{name} must be between {low} and {high}")
    return value


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
