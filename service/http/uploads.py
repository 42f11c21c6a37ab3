"""Reading photos and parameters out of requests (transport only: the values are judged by the
application, ``service.app.inputs``)."""

from __future__ import annotations

import json
import math
import re

from flask import request

from service.app import Photo
from service.http.errors import ApiError

_WHOLE_NUMBER = re.compile(r"[0-9]{1,10}")
MAX_WHOLE_NUMBER = 2**31 - 1
_NUMBER = re.compile(r"-?(0|[1-9][0-9]{0,15})(\.[0-9]{1,17})?([eE][+-]?[0-9]{1,3})?")  # a JSON number


MAX_PHOTOS = 20  # per request: each photo is detected and encoded while the client waits
MAX_FORM_FIELD_BYTES = 65_536  # a field that is not a file (person, threshold, top_k, ...)
# Werkzeug applies its form-memory limit to each 64 KB chunk it reads *plus* what it still holds, files
# included, so that limit must sit well above one chunk or a large photo is refused at random; it bounds
# memory, and the field limit above is ours, checked as each field is read.
PARSER_MEMORY_BYTES = 4 * 65_536


def uploaded_photos() -> list[Photo]:
    """Every uploaded file of a multipart request, named by its file name, in the order sent."""
    files = list(request.files.items(multi=True))
    if len(files) > MAX_PHOTOS:
        raise ApiError(400, "bad_request", f"at most {MAX_PHOTOS} photos per request, not {len(files)}")
    photos = []
    for position, (field, storage) in enumerate(files):
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
    if value is not None and len(value) > MAX_FORM_FIELD_BYTES:
        raise ApiError(413, "too_large", f"a form field is over the {MAX_FORM_FIELD_BYTES // 1024} KB limit")
    return request.args.get(name) if value is None else value


def int_parameter(name: str, default: int) -> int:
    """A whole number in plain ASCII digits (no sign, no spaces), or ``default`` when absent."""
    raw = parameter(name)
    if raw is None:
        return default
    if not _WHOLE_NUMBER.fullmatch(raw) or int(raw) > MAX_WHOLE_NUMBER:
        raise ApiError(400, "bad_request", f"{name} must be a whole number up to {MAX_WHOLE_NUMBER}, not {raw[:20]!r}")
    return int(raw)


def number_parameter(name: str) -> float | None:
    """A number written as JSON writes one (0.65, 6.5e-1), or None when absent."""
    raw = parameter(name)
    if raw is None:
        return None
    if not _NUMBER.fullmatch(raw):
        raise ApiError(400, "bad_request", f"{name} must be a number such as 0.65, not {raw[:20]!r}")
    return float(raw)


def bool_parameter(name: str) -> bool:
    raw = (parameter(name) or "").lower()
    if raw in ("", "0", "false", "no"):
        return False
    if raw in ("1", "true", "yes"):
        return True
    raise ApiError(400, "bad_request", f"{name} must be true or false")


MAX_JSON_BYTES = 65_536
MAX_JSON_DEPTH = 32


def json_object() -> dict:
    """The request's JSON object, read strictly: UTF-8, at most 64 KB and 32 levels deep, no NaN or
    Infinity, no number too large for a float. Anything else is a 400 (or a 413), never a failure."""
    if not request.is_json:
        raise ApiError(400, "bad_request", "the body must be a JSON object (Content-Type: application/json)")
    if (request.content_length or 0) > MAX_JSON_BYTES:
        raise ApiError(413, "too_large", f"a JSON body is at most {MAX_JSON_BYTES // 1024} KB")
    data = request.get_data(cache=False)
    if len(data) > MAX_JSON_BYTES:
        raise ApiError(413, "too_large", f"a JSON body is at most {MAX_JSON_BYTES // 1024} KB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "bad_request", "the body is not valid UTF-8") from None
    if _nesting(text) > MAX_JSON_DEPTH:  # json.loads recurses: very deep input would exhaust the stack
        raise ApiError(400, "bad_request", f"the JSON nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        body = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except ValueError as exc:  # JSONDecodeError, and our refusals
        raise ApiError(400, "bad_request", f"the body is not strict JSON: {str(exc)[:200]}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "bad_request", "the body must be a JSON object")
    return body


def _nesting(text: str) -> int:
    """The deepest nesting of arrays and objects in JSON text (brackets inside strings do not count)."""
    deepest = depth = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:20]} is too large for a number")
    return value
