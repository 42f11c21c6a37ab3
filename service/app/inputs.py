"""Checks on the values a caller hands the application: person ids, names, metadata, thresholds.

Front ends parse their transport (argv, JSON, form fields) into Python values; the values are judged
here, once, so the CLI and the API accept and refuse the same things with the same messages.
"""

from __future__ import annotations

import json
import math
import unicodedata
from datetime import UTC, datetime
from typing import Any

from service.errors import FacerecError, Forbidden

MAX_PERSON_ID = 128
MAX_PAGE = 1000
MAX_NAME = 256
MAX_TOP_K = 50
MAX_THRESHOLD = 2.0  # unit vectors are at most 2 apart


def person_id(value: Any) -> str:
    """A person id: 1 to 128 characters after trimming, no slash, backslash or control character
    (ids also name URLs and folders). The same id is found however it was padded."""
    if not isinstance(value, str):
        raise FacerecError("a person id is a string")
    text = value.strip()
    if not 0 < len(text) <= MAX_PERSON_ID:
        raise FacerecError(f"invalid person id {_shown(value)}: 1 to {MAX_PERSON_ID} characters")
    if any(c in "/\\" or unicodedata.category(c) in ("Cc", "Cs") for c in text):
        raise FacerecError(f"invalid person id {_shown(value)}: no slashes, control characters or lone surrogates")
    return text


def person_name(value: Any) -> str | None:
    """A display name as given, or None: at most 256 characters, no NUL or lone surrogate."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_NAME:
        raise FacerecError(f"a name is a string of at most {MAX_NAME} characters")
    # PostgreSQL text cannot hold NUL (SQLite can): refused here, or the same name is a 400 on one
    # database and a failure on the other.
    if "\x00" in value or any(unicodedata.category(c) == "Cs" for c in value):
        raise FacerecError("a name may not contain NUL characters or lone surrogates")
    return value


MAX_METADATA_BYTES = 16_384  # as compact JSON
MAX_METADATA_DEPTH = 8


def metadata(value: Any) -> dict | None:
    """Free-form metadata: a JSON object of at most 16 KB and 8 levels, finite numbers, valid text."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise FacerecError("metadata is a JSON object")
    _check_json_value(value, 1)
    try:
        size = len(json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8"))
    except ValueError:  # an integer of more digits than Python writes out (4,300 by default)
        raise FacerecError("metadata numbers have at most 4,300 digits") from None
    if size > MAX_METADATA_BYTES:
        raise FacerecError(f"metadata is {size:,} bytes as JSON, over the {MAX_METADATA_BYTES:,}-byte limit")
    return value


def _check_json_value(value: Any, depth: int) -> None:
    if depth > MAX_METADATA_DEPTH:
        raise FacerecError(f"metadata nests deeper than {MAX_METADATA_DEPTH} levels")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise FacerecError("metadata keys are text")
            _check_text(key, "a metadata key")
            _check_json_value(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_json_value(item, depth + 1)
    elif isinstance(value, str):
        _check_text(value, "metadata text")
    elif isinstance(value, float) and not math.isfinite(value):
        raise FacerecError("metadata numbers are finite (no NaN or Infinity)")
    elif not (value is None or isinstance(value, (bool, int, float))):
        raise FacerecError("metadata holds JSON values only")


def _check_text(value: str, what: str) -> None:
    if any(unicodedata.category(c) == "Cs" for c in value):
        raise FacerecError(f"{what} may not contain lone surrogates")


def threshold(value: Any, configured: float, may_loosen: bool = True) -> float:
    """The threshold a request decides at: the configured one, or a valid one it asks for.

    ``may_loosen=False`` (a client key) allows only a stricter (lower or equal) threshold.
    """
    if value is None:
        return configured
    if isinstance(value, bool):  # float(True) is 1.0, but true is not a threshold
        raise FacerecError("threshold must be a number, not true or false")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer beyond any float
        raise FacerecError(f"threshold must be a number, not {_shown(value)}") from None
    if not (math.isfinite(number) and 0 < number <= MAX_THRESHOLD):
        raise FacerecError(f"threshold must be above 0 and at most {MAX_THRESHOLD:g}")
    if number > configured and not may_loosen:
        raise Forbidden(f"this key may only tighten the threshold (at most the configured {configured:g}), "
                        f"not loosen it to {number:g}")
    return number


MAX_FACE_ID = 2**31 - 1  # faces.id is a 32-bit integer on PostgreSQL


def face_id(value: Any) -> int:
    """A face id as every database can hold it."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_FACE_ID:
        raise FacerecError(f"a face id is a whole number from 1 to {MAX_FACE_ID}")
    return value


def top_k(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_TOP_K:
        raise FacerecError(f"top_k must be a whole number from 1 to {MAX_TOP_K}")
    return value


def search_text(value: Any) -> str | None:
    """What to look for among people's ids and names: trimmed, at most a name's length; None for none."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_NAME:
        raise FacerecError(f"a search is text of at most {MAX_NAME} characters")
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in value):
        raise FacerecError("a search may not contain control characters or lone surrogates")
    return value.strip() or None


def page_size(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PAGE:
        raise FacerecError(f"a page holds 1 to {MAX_PAGE} entries")
    return value


def moment(value: Any) -> datetime:
    """A point in time from ISO 8601 text (``2026-11-23``, ``2026-11-23T08:00:00+01:00``); no zone
    means UTC."""
    try:
        parsed = datetime.fromisoformat(str(value).strip())
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: a zone offset pushing it past year 1 or 9999
        raise FacerecError(f"not a date and time in ISO 8601 (years 1 to 9999): {_shown(value)}") from None


def _shown(value: Any, limit: int = 40) -> str:
    """A value for an error message, cut short: messages are echoed and logged."""
    try:
        text = repr(value)
    except ValueError:  # an integer of more digits than Python writes out
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit] + "..."
