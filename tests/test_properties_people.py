"""Properties of people's bodies (POST /v1/people, PATCH /v1/people/{id}), by Hypothesis.

Through the real `facerec serve` (SQLite, as the other HTTP suites): bodies valid by construction,
arbitrary JSON values (lone surrogates, NaN literals, huge numbers, unknown fields), and raw bytes that are
not JSON (invalid UTF-8, deep nesting, cut-off text). Every answer is below 500 and in the error shape when
it is an error; a valid body is taken; a person is stored (or changed) iff the answer says so, and reads
back as sent after the documented normalization (ids trimmed); anything refused changes nothing.

Through the application core on SQLite and on PostgreSQL (no server: the people service needs no model):
the same values reach the database, which must store what the checks let through, or refuse it as a bad
request, never fail (PostgreSQL text cannot hold NUL, which SQLite can).

The examples are few and derandomized, so every run sends the same requests.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from http_client import free_port, running_server
from service.app import inputs
from service.errors import FacerecError
from service.http.errors import ERROR_CODES
from service.http.uploads import MAX_JSON_BYTES

ADMIN_KEY = "admin-" + uuid.uuid4().hex
EXISTING = "existing"  # a person the tests never change: a create with this id must be a 409
PATCHED = "patched"  # the person every PATCH goes to
SETTINGS = settings(max_examples=150, derandomize=True, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])
FIELDS = ("id", "name", "metadata", "active", "faces", "created_at", "updated_at")


@pytest.fixture(scope="module")
def server(tmp_path_factory, project_root):
    if not (project_root / "models" / "facenet_keras.h5").is_file():
        pytest.skip("FaceNet weights not fetched (make models)")
    env = {"FACEREC_API_KEYS": f"admin:{ADMIN_KEY}", "FACEREC_SERVER__WORKERS": "1", "FACEREC_DATABASE_URL": ""}
    with running_server(tmp_path_factory.mktemp("properties-home"), free_port(), env, project_root) as client:
        for person in ({"id": EXISTING, "name": "Ada", "metadata": {"badge": 17}}, {"id": PATCHED}):
            assert client.call("POST", "/v1/people", ADMIN_KEY, json_body=person)[0] == 201
        yield client


# ---- bodies ------------------------------------------------------------------------------------------

ANY_CHAR = st.characters(exclude_categories=())  # every code point, lone surrogates too
WHITE = st.text(st.sampled_from(" \t\n\r\x0b\x0c\x85\xa0\u2028\u3000"), max_size=3)
ID_CORE = st.text(st.characters(exclude_categories=("Cc", "Cs"), exclude_characters="/\\"), min_size=1, max_size=30)
VALID_IDS = st.builds(lambda left, core, right: left + core + right, WHITE, ID_CORE, WHITE).filter(
    lambda value: value.strip() and value.strip() not in (EXISTING, PATCHED))
VALID_NAMES = st.none() | st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=60)
META_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)
META_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | META_TEXT
VALID_METADATA = st.none() | st.dictionaries(META_TEXT, st.recursive(
    META_SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(META_TEXT, inner, max_size=4),
    max_leaves=12), max_size=5).filter(lambda value: depth(value) <= inputs.MAX_METADATA_DEPTH)

ANY_TEXT = st.text(ANY_CHAR, max_size=40) | st.text(ANY_CHAR, min_size=250, max_size=300)
ANY_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(-(10**400), 10**400)
    | st.floats() | ANY_TEXT,  # NaN and infinities are written as the literals Python writes
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ANY_TEXT, inner, max_size=4), max_leaves=20)
NUMBER_LITERALS = st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1e999", "9" * 5000, "1" * 4301,
                                   "0x10", "01", "+1", ".5", "1.", "1e", "tru", "nul", "1" * 300])
BAD_UTF8 = st.sampled_from([b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82", b"\xf4\x90\x80\x80", b"\x80"])


def depth(value) -> int:
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    return 0


def encoded(body, ascii_only: bool) -> bytes:
    """JSON as Python writes it (NaN written as a literal); lone surrogates, where not escaped, make the
    bytes invalid UTF-8."""
    return json.dumps(body, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


@st.composite
def valid_bodies(draw, fields: tuple[str, ...]) -> dict:
    candidates = {"id": VALID_IDS, "name": VALID_NAMES, "metadata": VALID_METADATA, "active": st.booleans()}
    return {field: draw(candidates[field]) for field in fields if field == "id" or draw(st.booleans())}


@st.composite
def requests(draw, fields: tuple[str, ...]) -> tuple[bytes, str | None, bool]:
    """(body bytes, Content-Type, whether the body is valid by construction)."""
    kind = draw(st.sampled_from(["valid", "valid", "json", "json", "literal", "deep", "utf8", "cut", "bytes"]))
    content_type = "application/json"
    if kind == "valid":
        return encoded(draw(valid_bodies(fields)), draw(st.booleans())), content_type, True
    if kind == "json":  # any JSON value, any fields, with a valid body's fields mixed in
        body = draw(ANY_VALUE | st.dictionaries(st.sampled_from(fields + ("faces", "extra")) | ANY_TEXT, ANY_VALUE,
                                                max_size=4))
        if isinstance(body, dict) and draw(st.booleans()):
            body = {**draw(valid_bodies(fields)), **body}
        data = encoded(body, draw(st.booleans()))
        content_type = draw(st.sampled_from(["application/json", "application/json; charset=utf-8", "text/plain"]))
        return data, content_type, False
    if kind == "literal":
        text = '{"id": "literal", "name": "n", "metadata": {"v": %s}}' % draw(NUMBER_LITERALS)
        return text.encode(), content_type, False
    if kind == "deep":
        levels = draw(st.integers(1, 40_000))
        text = '{"id": "deep", "metadata": {"v": ' + "[" * levels + "]" * levels + "}}"
        return text.encode(), content_type, False
    if kind == "utf8":
        return b'{"id": "bad-' + draw(BAD_UTF8) + b'", "name": "x"}', content_type, False
    if kind == "cut":
        data = encoded(draw(valid_bodies(fields)), False)
        return data[:draw(st.integers(0, max(0, len(data) - 1)))], content_type, False
    return draw(st.binary(max_size=200)), draw(st.sampled_from([content_type, None])), False


# ---- the properties ----------------------------------------------------------------------------------

def people(client) -> dict[str, dict]:
    status, body, _ = client.call("GET", "/v1/people?limit=1000", ADMIN_KEY)
    assert status == 200, body
    return {person["id"]: person for person in body["people"]}


def check_answer(status: int, body) -> None:
    """Never a server error; every error in the one JSON shape, with a code of the vocabulary."""
    assert status < 500, body
    if status >= 400:
        assert isinstance(body, dict) and set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
        assert body["error"]["code"] in ERROR_CODES and body["error"]["message"], body
    event(str(status) if status < 400 else f"{status} {body['error']['code']}")


def person_path(person_id: str) -> str:
    return "/v1/people/" + quote(person_id.encode("utf-8", "surrogatepass"), safe="")


@SETTINGS
@given(attempt=requests(("id", "name", "metadata")))
# A NUL in a name was stored on SQLite and a 500 on PostgreSQL: it is refused on both now.
@example(attempt=(b'{"id": "nul-name", "name": "a\\u0000b"}', "application/json", False))
@example(attempt=(b'{"id": " \\u3000padded\\u2028 ", "name": null, "metadata": {}}', "application/json", True))
@example(attempt=(b'{"id": "big", "metadata": {"v": ' + b"7" * 4000 + b"}}", "application/json", True))
@example(attempt=(json.dumps({"id": "full", "metadata": {"k": "x" * 16_300}}).encode(), "application/json", True))
@example(attempt=(b'{"id": "e", "metadata": {"v": 1e308}}', "application/json", True))
@example(attempt=(b'{"id": " existing "}', "application/json", False))  # taken: 409
def test_creating_a_person(server, attempt):
    """A create is taken iff the answer is 201; the person then reads back as sent, id trimmed."""
    data, content_type, valid = attempt
    client = server
    before = people(client)
    status, body, _ = client.call("POST", "/v1/people", ADMIN_KEY, raw=data, content_type=content_type)
    check_answer(status, body)
    after = people(client)
    if status != 201:
        assert not valid or len(data) > MAX_JSON_BYTES, (status, body)
        assert after == before, body  # nothing stored, nothing changed
        return
    try:
        sent = json.loads(data)
        expected = {"id": sent["id"].strip(), "name": sent.get("name"), "metadata": sent.get("metadata"),
                    "active": True, "faces": 0}
        assert {field: body[field] for field in expected} == expected and set(body) == set(FIELDS)
        assert set(after) == set(before) | {body["id"]} and body["id"] not in before
        got = client.call("GET", person_path(body["id"]), ADMIN_KEY)
        assert got[0] == 200 and got[1] == body == after[body["id"]], got
    finally:
        assert client.call("DELETE", person_path(body["id"]), ADMIN_KEY)[0] == 200
    assert people(client) == before


@SETTINGS
@given(attempt=requests(("name", "metadata", "active")),
       path=st.sampled_from([PATCHED, PATCHED, f" {PATCHED}\u3000", "nobody"]))
@example(attempt=(b'{"name": "a\\u0000b"}', "application/json", False), path=PATCHED)  # no NUL, as above
@example(attempt=(b'{"metadata": null, "name": null}', "application/json", True), path=PATCHED)
@example(attempt=(b'{"active": 1}', "application/json", False), path=PATCHED)
@example(attempt=(b'{"id": "renamed"}', "application/json", False), path=PATCHED)
@example(attempt=(b'{"name": "x"}', "application/json", True), path=EXISTING + "/faces")  # not a person: 405
def test_changing_a_person(server, attempt, path):
    """A change is made iff the answer is 200, to the fields sent only; anything refused changes nothing."""
    data, content_type, valid = attempt
    client = server
    before = people(client)
    status, body, _ = client.call("PATCH", person_path(path), ADMIN_KEY, raw=data, content_type=content_type)
    check_answer(status, body)
    after = people(client)
    if status != 200:
        assert not valid or path.strip() != PATCHED or len(data) > MAX_JSON_BYTES, (status, body)
        assert after == before, body
        return
    assert path.strip() == PATCHED
    sent = json.loads(data)
    expected = {**before[PATCHED], **sent, "updated_at": body["updated_at"]}
    assert body == expected == after[PATCHED], (sent, body)
    assert {k: v for k, v in after.items() if k != PATCHED} == {k: v for k, v in before.items() if k != PATCHED}


# ---- the same values through the core, on both databases -------------------------------------------

@pytest.fixture
def core(config, tmp_path, database_url):
    """An application core without a model (people need none), on a fresh SQLite or PostgreSQL roster."""
    from service.app import Facerec

    made = Facerec(replace(config, home=tmp_path / "home", database_url=database_url))
    yield made
    made.close()


IDS = VALID_IDS | ANY_TEXT | st.integers() | st.none()
NAMES = VALID_NAMES | ANY_TEXT | st.integers()
METADATA = VALID_METADATA | st.dictionaries(ANY_TEXT, ANY_VALUE, max_size=4) | ANY_VALUE


def stored(core) -> dict:
    return {person.id: person.to_json() for person in core.people.list().people}


@settings(SETTINGS, max_examples=80)
@given(person_id=IDS, name=NAMES, metadata=METADATA, new_name=NAMES, new_metadata=METADATA)
@example(person_id="nul", name="a\x00b", metadata=None, new_name=None, new_metadata=None)  # was a 500 on PostgreSQL
@example(person_id="nul", name=None, metadata={"k\x00": "v\x00"}, new_name="a\x00b", new_metadata=None)
@example(person_id="big", name=None, metadata={"v": 10**4000, "f": -0.0, "e": 1e308}, new_name="x" * 256,
         new_metadata={"": [[[[[[[]]]]]]]})
def test_what_the_checks_let_through_is_stored_as_given(core, person_id, name, metadata, new_name, new_metadata):
    """Create and change a person with any values: refused as a bad request, or stored and read back as
    given (id trimmed), on either database; a refused change leaves the person as they were."""
    before = stored(core)
    try:
        person = core.people.create(person_id, name, metadata)
    except FacerecError as exc:
        assert exc.code == "bad_request", exc
        assert stored(core) == before
        return
    try:
        expected = {"id": person_id.strip(), "name": name, "metadata": metadata, "active": True, "faces": 0}
        assert {field: person.to_json()[field] for field in expected} == expected
        assert stored(core)[person.id] == core.people.get(person_id).to_json() == person.to_json()
        try:
            changed = core.people.update(person.id, name=new_name, metadata=new_metadata)
        except FacerecError as exc:
            assert exc.code == "bad_request", exc
            assert core.people.get(person.id).to_json() == person.to_json()
        else:
            assert (changed.name, changed.metadata) == (new_name, new_metadata)
            assert core.people.get(person.id).to_json() == changed.to_json()
    finally:
        core.people.remove(person.id)
    assert stored(core) == before
