"""Properties of the input checks (``service.app.inputs``), by Hypothesis, without a server: given any
text (lone surrogates, control characters, Unicode white space, full-width digits, huge strings) or any
JSON-like value (nested lists and objects, big integers, NaN and infinities, keys of every kind), each
check returns a valid, normalized value or raises FacerecError; and a value it returned is accepted again,
unchanged.
"""

from __future__ import annotations

import json
import math
import unicodedata
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from service.app import inputs
from service.errors import FacerecError, Forbidden

SETTINGS = settings(max_examples=200, derandomize=True, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# Characters the checks must think about: white space of every kind (``str.strip`` removes them all),
# controls (C0, DEL, C1), format characters that are not white space, full-width digits, lone surrogates,
# the separators an id may not hold.
WHITE = "\t\n\r\x0b\x0c\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u200a\u2028\u2029\u202f\u205f\u3000"
SPECIAL = WHITE + "\x00\x7f\x9f\u200b\u200d\ufeff０１９．－\ud800\udbff\udc00\udfff/\\%?#."
CHARS = st.characters(exclude_categories=()) | st.sampled_from(SPECIAL)  # every code point, surrogates too
TEXT = st.one_of(
    st.text(CHARS, max_size=40),
    st.text(CHARS, min_size=120, max_size=300),  # around the 128 and 256 limits
    st.builds(lambda fill, count, core: fill * count + core + fill * count,  # padded to any length
              st.sampled_from(WHITE), st.integers(0, 200), st.text(CHARS, max_size=10)),
    st.builds(lambda char, count: char * count, CHARS, st.integers(1_000, 40_000)),  # huge (over 16 KB as UTF-8)
)
BIG_INTS = st.builds(lambda digits, sign: sign * 10**digits, st.integers(15, 5_000), st.sampled_from([1, -1]))
INTEGERS = st.integers() | BIG_INTS | st.sampled_from([0, 1, -1, 2**31 - 1, 2**31, 2**63, -(2**63)])
FLOATS = st.floats(allow_nan=True, allow_infinity=True)
SCALARS = st.none() | st.booleans() | INTEGERS | FLOATS | TEXT
# Inside structures, mostly short text (long text in every leaf makes examples slow to draw, not better).
LEAF_TEXT = st.text(CHARS, max_size=12) | st.builds(lambda char, count: char * count, CHARS, st.integers(1, 20_000))
NOT_JSON = st.binary(max_size=8) | st.tuples(st.integers()) | st.frozensets(st.integers(), max_size=2) \
    | st.complex_numbers(max_magnitude=10) | st.builds(Decimal, st.integers()) | st.just(object())
KEYS = LEAF_TEXT | st.integers() | st.booleans() | st.none() | FLOATS | st.tuples(st.integers())
JSON_LIKE = st.recursive(st.none() | st.booleans() | INTEGERS | FLOATS | LEAF_TEXT | NOT_JSON,
                         lambda inner: st.lists(inner, max_size=5) | st.dictionaries(KEYS, inner, max_size=5),
                         max_leaves=25)
ANYTHING = JSON_LIKE | st.dictionaries(LEAF_TEXT, JSON_LIKE, max_size=4)
# Values that mostly pass, so that accepted values get their share of examples too.
PLAIN_TEXT = st.text(st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=140)
PLAIN_JSON = st.dictionaries(st.text(max_size=8), st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=15), max_size=4)


def refused_or(check, value, *args):
    """check(value, *args), or None when it refuses with our error (any other exception fails the test)."""
    try:
        return check(value, *args)
    except FacerecError as exc:
        assert exc.code in ("bad_request", "forbidden") and exc.message, exc
        assert len(exc.message) < 500, exc.message  # refusals quote the value cut short
        return None


def nested_depth(value) -> int:
    if isinstance(value, dict):
        return 1 + max(map(nested_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(nested_depth, value), default=0)
    return 0


def has(text: str, *categories: str) -> bool:
    return any(unicodedata.category(c) in categories for c in text)


@SETTINGS
@given(TEXT | SCALARS | PLAIN_TEXT)
@example(" \u3000madonna\u2029 ")
@example("a" * 128 + " ")
@example("\ud800")
@example("１２３")
def test_person_ids(value):
    found = refused_or(inputs.person_id, value)
    if found is None:
        text = value.strip() if isinstance(value, str) else ""
        assert not 0 < len(text) <= inputs.MAX_PERSON_ID or has(text, "Cc", "Cs") or "/" in text or "\\" in text
        return
    assert isinstance(value, str) and found == value.strip() and 0 < len(found) <= inputs.MAX_PERSON_ID
    assert not has(found, "Cc", "Cs") and "/" not in found and "\\" not in found
    assert inputs.person_id(found) == found


@SETTINGS
@given(TEXT | SCALARS | PLAIN_TEXT)
@example("Ada\x00")  # PostgreSQL cannot store it: refused on every database alike
def test_person_names(value):
    found = refused_or(inputs.person_name, value)
    if found is None:
        assert value is None or not isinstance(value, str) or len(value) > inputs.MAX_NAME or has(value, "Cs") \
            or "\x00" in value
        return
    assert found == value and len(found) <= inputs.MAX_NAME and not has(found, "Cs") and "\x00" not in found
    assert inputs.person_name(found) == found
    found.encode("utf-8")  # what is kept can be stored and sent as UTF-8


@SETTINGS
@given(TEXT | SCALARS | PLAIN_TEXT)
def test_search_texts(value):
    found = refused_or(inputs.search_text, value)
    if found is None:  # refused, or nothing to look for
        assert not isinstance(value, str) or len(value) > inputs.MAX_NAME or has(value, "Cc", "Cs") \
            or not value.strip()
        return
    assert found == value.strip() and 0 < len(found) <= inputs.MAX_NAME and not has(found, "Cc", "Cs")
    assert inputs.search_text(found) == found


@settings(SETTINGS, max_examples=300)
@given(ANYTHING | PLAIN_JSON)
@example({"n": 10**5000})  # more digits than Python turns into text by default
@example({"x": float("nan")})
@example({"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": 1}}}}}}}})
@example({"k": "v" * 16_400})
def test_metadata(value):
    found = refused_or(inputs.metadata, value)
    if found is None:
        return
    assert found is value and isinstance(found, dict)
    text = json.dumps(found, ensure_ascii=False, allow_nan=False)  # finite numbers, text keys, JSON values
    assert len(text.encode("utf-8")) <= inputs.MAX_METADATA_BYTES and nested_depth(found) <= inputs.MAX_METADATA_DEPTH
    assert json.loads(text) == found  # comes back from storage as it went in
    assert inputs.metadata(found) is found


@SETTINGS
@given(ANYTHING | TEXT, st.floats(0.01, 2.0), st.booleans())
@example(10**400, 0.7, True)  # too large for a float
@example(True, 0.7, True)
@example("１.０", 0.7, True)
@example("\ud800", 0.7, True)
def test_thresholds(value, configured, may_loosen):
    try:
        found = inputs.threshold(value, configured, may_loosen)
    except Forbidden:
        assert not may_loosen and float(value) > configured
        return
    except FacerecError:
        return
    assert isinstance(found, float) and math.isfinite(found) and 0 < found <= inputs.MAX_THRESHOLD
    assert found == configured if value is None else (may_loosen or found <= configured)
    assert not isinstance(value, bool)  # true is not a threshold of 1
    assert inputs.threshold(found, configured, may_loosen) == found


@pytest.mark.parametrize("check, low, high", [(inputs.top_k, 1, inputs.MAX_TOP_K),
                                              (inputs.page_size, 1, inputs.MAX_PAGE),
                                              (inputs.face_id, 1, inputs.MAX_FACE_ID)])
@settings(SETTINGS, max_examples=100)
@given(value=ANYTHING | TEXT)
def test_whole_numbers(check, low, high, value):
    found = refused_or(check, value)
    if found is None:
        assert isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high
        return
    assert type(found) is int and low <= found <= high and found == value and check(found) == found


@SETTINGS
@given(TEXT | SCALARS | st.datetimes(timezones=st.none() | st.timezones()))
@example("2026-11-23")
@example("０００１-01-01")
@example("9999-12-31T23:59:59-05:00")
@example("2026-11-23T08:00:00+01:00\x00")
@example(10**5000)  # its repr() fails: the refusal must still say something
def test_moments(value):
    found = refused_or(inputs.moment, value)
    if found is None:
        return
    assert isinstance(found, datetime) and found.tzinfo is not None and found.utcoffset().total_seconds() == 0
    assert inputs.moment(found.isoformat()) == found
    assert inputs.moment(found) == found
    assert datetime(1, 1, 1, tzinfo=UTC) <= found
