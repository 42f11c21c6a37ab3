"""The HTTP service end to end: the real `facerec serve` (gunicorn, 2 workers) on a free loopback port,
spoken to over HTTP with real photos, on SQLite and on PostgreSQL. Enrollment, identify, verify, delete, the Happy House door,
every error status, cross-worker visibility, audit, metrics and the OpenAPI document."""

from __future__ import annotations

import hashlib
import io
import json
import os
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
from PIL import Image

from http_client import (
    Client, assert_error, free_port, photo_file, png, running_server, side_by_side, with_bystander,
)

PEOPLE = ["ben_afflek", "elton_john", "jerry_seinfeld", "madonna", "mindy_kaling"]
ADMIN_KEY, CLIENT_KEY = "admin-" + uuid.uuid4().hex, "client-" + uuid.uuid4().hex
REFUSAL_REASONS = {"not_an_image", "truncated", "empty", "too_large", "no_face", "multiple_faces", "duplicate"}
UPLOAD_LIMIT_MB = 1  # small, so 413 is cheap to provoke


# ---- the server --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory, project_root, celebrity_dir, module_database_url):
    """`facerec serve` with 2 workers; yields (client, data home); stopped at the end of the module."""
    if not (project_root / "models" / "facenet_keras.h5").is_file():
        pytest.skip("FaceNet weights not fetched (make models)")
    home = tmp_path_factory.mktemp("http-home")
    env = {"FACEREC_API_KEYS": f"admin:{ADMIN_KEY},client:{CLIENT_KEY}",
           "FACEREC_SERVER__MAX_UPLOAD_MB": str(UPLOAD_LIMIT_MB), "FACEREC_SERVER__WORKERS": "2"}
    with running_server(home, free_port(), env, project_root) as client:
        yield client, home


@pytest.fixture(scope="module")
def client(server) -> Client:
    return server[0]


@pytest.fixture(scope="module")
def enrolled(client, celebrity_dir) -> dict[str, int]:
    """The 5-celebrity train photos enrolled through the API, several photos per request."""
    accepted = {}
    for person in PEOPLE:
        status, body, _ = client.call("POST", "/v1/people", ADMIN_KEY,
                                      json_body={"id": person, "name": person.replace("_", " ").title()})
        assert status == 201 and body["id"] == person and body["faces"] == 0, body
        accepted[person] = 0
        for chunk in chunks(sorted((celebrity_dir / "train" / person).iterdir())):
            status, body, _ = client.call("POST", f"/v1/people/{person}/faces", ADMIN_KEY,
                                          files=[photo_file(p) for p in chunk])
            assert status in (200, 201) and len(body["photos"]) == len(chunk), body
            for item in body["photos"]:
                if item["status"] == "accepted":
                    assert isinstance(item["face_id"], int)
                else:
                    assert item["status"] == "refused" and item["reason"] in REFUSAL_REASONS, item
            accepted[person] += body["accepted"]
    return accepted


def chunks(paths: list[Path], most: int = 6, budget: int = 800_000):
    """Groups of up to ``most`` photos whose total size stays under the upload limit."""
    group, size = [], 0
    for path in paths:
        if group and (len(group) == most or size + path.stat().st_size > budget):
            yield group
            group, size = [], 0
        group.append(path)
        size += path.stat().st_size
    if group:
        yield group


def val_photos(celebrity_dir: Path, person: str) -> list[Path]:
    return sorted((celebrity_dir / "val" / person).iterdir())


def identify(client: Client, photo: Path | bytes, key: str = CLIENT_KEY, **fields):
    data = photo if isinstance(photo, bytes) else photo.read_bytes()
    return client.call("POST", "/v1/identify", key, files=[("photo", "probe.jpg", data)], fields=fields)


def verify(client: Client, photo: Path | bytes, person: str, key: str = CLIENT_KEY):
    data = photo if isinstance(photo, bytes) else photo.read_bytes()
    return client.call("POST", "/v1/verify", key, files=[("photo", "probe.jpg", data)], fields={"person": person})


# ---- the OpenAPI document matches the routes (in process, no model) --------------------------------------

def test_openapi_documents_every_route_and_nothing_else(tmp_path):
    from service.config import load_config
    from service.http.app import create_app

    app = create_app(load_config(home=str(tmp_path)), load_model=False)
    document = app.test_client().get("/openapi.json").get_json()
    assert document["openapi"].startswith("3.")
    routes: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("console."):  # the console's pages and files: not the API
            continue
        path = rule.rule
        for name in rule.arguments:
            path = path.replace(f"<int:{name}>", f"{{{name}}}").replace(f"<{name}>", f"{{{name}}}")
        routes.setdefault(path, set()).update(m.lower() for m in rule.methods - {"HEAD", "OPTIONS"})
    documented = {path: set(ops) for path, ops in document["paths"].items()}
    assert documented == routes
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert operation["responses"], (path, method)
            for param in operation.get("parameters", []):
                assert param["in"] != "path" or f"{{{param['name']}}}" in path


def test_routes_answer_503_without_a_model(tmp_path):
    from service.config import load_config
    from service.http.app import create_app

    config = load_config(home=str(tmp_path), env={"FACEREC_API_KEYS": "client:k"})
    http = create_app(config, load_model=False).test_client()
    assert http.get("/healthz").status_code == 200
    assert http.get("/readyz").status_code == 503
    response = http.post("/v1/identify", headers={"X-API-Key": "k"})
    assert response.status_code == 503 and response.get_json()["error"]["code"] == "not_ready"


# ---- the live service ----------------------------------------------------------------------------------

def test_health_ready_and_openapi_over_http(client):
    assert client.call("GET", "/healthz")[:2] == (200, {"status": "alive"})
    status, body, _ = client.call("GET", "/readyz")
    assert status == 200 and body["model_loaded"] and body["index_consistent"]
    status, body, _ = client.call("GET", "/openapi.json")
    assert status == 200 and "/v1/identify" in body["paths"]


def test_keys_and_roles(client):
    assert_error(client.call("GET", "/v1/people"), 401, "unauthorized")
    assert_error(client.call("GET", "/v1/people", "not-a-key"), 401, "unauthorized")
    assert_error(client.call("GET", "/v1/people", CLIENT_KEY), 403, "forbidden")
    assert_error(client.call("POST", "/v1/identify"), 401, "unauthorized")
    assert client.call("GET", "/v1/people", ADMIN_KEY)[0] == 200


def test_enrollment_through_the_api(client, enrolled):
    assert all(n >= 10 for n in enrolled.values()), enrolled
    status, body, _ = client.call("GET", "/v1/people?limit=2&offset=1", ADMIN_KEY)
    assert status == 200 and body["total"] == 5 and [p["id"] for p in body["people"]] == PEOPLE[1:3]
    status, body, _ = client.call("GET", "/v1/people/madonna", ADMIN_KEY)
    assert status == 200 and body["faces"] == enrolled["madonna"] and body["name"] == "Madonna"
    status, body, _ = client.call("GET", "/v1/people/madonna/faces", ADMIN_KEY)
    assert status == 200 and len(body["faces"]) == enrolled["madonna"]


def test_search_thumbnails_and_whoami(client, enrolled):
    """What the console reads: people by id or name, a face's crop as a JPEG, the key's role."""
    status, body, _ = client.call("GET", "/v1/people?q=ON", ADMIN_KEY)  # any case, id or name
    assert status == 200 and [p["id"] for p in body["people"]] == ["elton_john", "madonna"] and body["total"] == 2
    status, body, _ = client.call("GET", "/v1/people?q=Jerry%20S", ADMIN_KEY)  # "Jerry Seinfeld", the name
    assert [p["id"] for p in body["people"]] == ["jerry_seinfeld"]
    assert client.call("GET", "/v1/people?q=_%25", ADMIN_KEY)[1]["people"] == []  # wildcards are literal
    face = client.call("GET", "/v1/people/madonna/faces", ADMIN_KEY)[1]["faces"][0]["id"]
    status, jpeg, headers = client.call("GET", f"/v1/people/madonna/faces/{face}/crop.jpg", ADMIN_KEY, binary=True)
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    assert Image.open(io.BytesIO(jpeg)).size == (160, 160)
    assert_error(client.call("GET", f"/v1/people/ben_afflek/faces/{face}/crop.jpg", ADMIN_KEY), 404, "unknown_face")
    assert_error(client.call("GET", f"/v1/people/madonna/faces/{face}/crop.jpg", CLIENT_KEY), 403, "forbidden")
    status, body, _ = client.call("GET", "/v1/whoami", CLIENT_KEY)
    assert status == 200 and body["role"] == "client" and body["key_id"].startswith("client:") and body["threshold"] == 0.7
    assert_error(client.call("GET", "/v1/whoami"), 401, "unauthorized")


def test_a_persons_export(client, enrolled):
    status, body, _ = client.call("GET", "/v1/people/madonna/export", ADMIN_KEY)
    assert status == 200 and body["person"]["id"] == "madonna" and len(body["faces"]) == enrolled["madonna"], body
    assert all(len(f["encoding"]) == 128 and f["crop_png_base64"] for f in body["faces"])
    assert_error(client.call("GET", "/v1/people/madonna/export", CLIENT_KEY), 403)
    assert_error(client.call("GET", "/v1/people/nobody/export", ADMIN_KEY), 404, "unknown_person")


def test_a_bad_photo_does_not_sink_the_good_ones(client, enrolled, celebrity_dir):
    known = sorted((celebrity_dir / "train" / "ben_afflek").iterdir())[0]
    fresh = val_photos(celebrity_dir, "ben_afflek")[2]
    blank = png(Image.new("RGB", (200, 200), (128, 128, 128)))
    files = [photo_file(known), ("photo", "notes.txt", b"not an image"), ("photo", "blank.png", blank),
             photo_file(fresh)]
    status, body, _ = client.call("POST", "/v1/people/ben_afflek/faces", ADMIN_KEY, files=files)
    assert status == 201, body
    assert [p["reason"] or p["status"] for p in body["photos"]] == ["duplicate", "not_an_image", "no_face",
                                                                     "accepted"]
    assert body["photos"][0]["face_id"] is not None  # the face that photo already is
    # Take the val photo back out so identification below is on train photos only.
    face_id = body["photos"][3]["face_id"]
    status, body, _ = client.call("DELETE", f"/v1/people/ben_afflek/faces/{face_id}", ADMIN_KEY)
    assert (status, body) == (200, {"deleted": "face", "person": "ben_afflek", "face_id": face_id,
                                    "faces_removed": 1, "audit_events_erased": 0})
    assert_error(client.call("DELETE", f"/v1/people/ben_afflek/faces/{face_id}", ADMIN_KEY), 404, "unknown_face")


def test_identify_every_val_photo(client, enrolled, celebrity_dir):
    for person in PEOPLE:
        for photo in val_photos(celebrity_dir, person):
            status, body, _ = identify(client, photo, top_k="5")
            assert status == 200, body
            face = body["faces"][0]
            assert face["candidates"][0]["person"] == person, (photo.name, face)
            assert face["match"] in (person, None), (photo.name, face)  # never someone else
            assert 1 <= len(face["candidates"]) <= 5 and len(face["box"]) == 4  # people among the k nearest faces


def test_verify_true_and_false_claims(client, enrolled, celebrity_dir):
    photo = val_photos(celebrity_dir, "mindy_kaling")[1]  # own distance 0.40 in the README table
    status, body, _ = verify(client, photo, "mindy_kaling")
    assert status == 200 and body["match"] is True and body["distance"] < body["threshold"] == 0.7, body
    for impostor in ("madonna", "jerry_seinfeld"):
        status, body, _ = verify(client, photo, impostor)
        assert status == 200 and body["match"] is False and body["distance"] > body["threshold"] + 0.1, body


def test_threshold_per_request_client_may_only_tighten(client, enrolled, celebrity_dir):
    photo = val_photos(celebrity_dir, "mindy_kaling")[1]
    loose = verify(client, photo, "mindy_kaling")[1]
    stricter = round(loose["distance"] - 0.01, 4)
    status, body, _ = client.call("POST", "/v1/verify", CLIENT_KEY, files=[photo_file(photo)],
                                  fields={"person": "mindy_kaling", "threshold": str(stricter)})
    assert status == 200 and body["match"] is False and body["threshold"] == stricter, body
    assert_error(client.call("POST", "/v1/identify", CLIENT_KEY, files=[photo_file(photo)], fields={"threshold": "0.9"}),
                 403, "forbidden")
    status, body, _ = client.call("POST", "/v1/identify", ADMIN_KEY, files=[photo_file(photo)],
                                  fields={"threshold": "0.9"})
    assert status == 200 and body["threshold"] == 0.9 and body["faces"][0]["match"] == "mindy_kaling"
    for bad in ("0", "2.5", "nan", "1e400", "", " 0.5"):
        assert_error(client.call("POST", "/v1/verify", ADMIN_KEY, files=[photo_file(photo)],
                                 fields={"person": "mindy_kaling", "threshold": bad}), 400, "bad_request")


def test_a_passer_by_does_not_spoil_a_verify(client, enrolled, celebrity_dir):
    main, passer_by = val_photos(celebrity_dir, "mindy_kaling")[1], val_photos(celebrity_dir, "madonna")[1]
    alone = verify(client, main, "mindy_kaling")[1]
    status, body, _ = verify(client, with_bystander(main, passer_by), "mindy_kaling")
    assert status == 200 and body["faces_found"] == 2 and body["match"] is True, body
    # The same face (a wider canvas shifts detection by a fraction of a pixel), not the passer-by.
    assert all(abs(a - b) < 2 for a, b in zip(body["box"], alone["box"]))
    assert abs(body["distance"] - alone["distance"]) < 0.05
    # Two faces of a size (the photo beside itself): no face dominates, so no decision.
    assert_error(verify(client, with_bystander(main, main, scale=1.0), "mindy_kaling"), 422, "multiple_faces")


def test_an_id_with_a_percent_sign_is_addressed_by_its_encoded_path(client):
    status, body, _ = client.call("POST", "/v1/people", ADMIN_KEY, json_body={"id": "50%C3%B9 off"})
    assert status == 201, body
    status, body, _ = client.call("GET", "/v1/people/50%25C3%25B9%20off", ADMIN_KEY)
    assert status == 200 and body["id"] == "50%C3%B9 off", body
    status, body, _ = client.call("GET", "/v1/people/50%C3%B9%20off", ADMIN_KEY)  # that is "50ù off"
    assert status == 404, body
    assert client.call("DELETE", "/v1/people/50%25C3%25B9%20off", ADMIN_KEY)[0] in (200, 204)


def test_patch_person(client, enrolled):
    status, body, _ = client.call("PATCH", "/v1/people/elton_john", ADMIN_KEY,
                                  json_body={"name": "Sir Elton", "metadata": {"badge": 42}})
    assert status == 200 and body["name"] == "Sir Elton" and body["metadata"] == {"badge": 42}
    assert client.call("GET", "/v1/people/elton_john", ADMIN_KEY)[1]["metadata"] == {"badge": 42}
    assert_error(client.call("PATCH", "/v1/people/elton_john", ADMIN_KEY, json_body={"active": "yes"}), 400)


def test_a_write_through_one_worker_is_seen_by_the_next_identify(client, enrolled, celebrity_dir):
    probe = val_photos(celebrity_dir, "madonna")[4]  # own distance 0.82: not matched as madonna
    assert client.call("POST", "/v1/people", ADMIN_KEY, json_body={"id": "newcomer"})[0] == 201
    status, body, _ = client.call("POST", "/v1/people/newcomer/faces", ADMIN_KEY, files=[photo_file(probe)])
    assert status == 201 and body["accepted"] == 1, body
    seen = [identify(client, probe)[1]["faces"][0]["match"] for _ in range(10)]  # both workers answer
    assert seen == ["newcomer"] * 10
    assert client.call("DELETE", "/v1/people/newcomer", ADMIN_KEY)[0] == 200
    seen = [identify(client, probe)[1]["faces"][0]["candidates"][0]["person"] for _ in range(10)]
    assert seen == ["madonna"] * 10


def test_deleted_person_is_no_longer_matched(client, enrolled, celebrity_dir):
    status, body, _ = client.call("DELETE", "/v1/people/mindy_kaling", ADMIN_KEY)
    assert (status, body) == (200, {"deleted": "person", "person": "mindy_kaling", "face_id": None,
                                    "faces_removed": enrolled["mindy_kaling"], "audit_events_erased": 0})
    assert_error(client.call("GET", "/v1/people/mindy_kaling", ADMIN_KEY), 404, "unknown_person")
    for photo in val_photos(celebrity_dir, "mindy_kaling"):
        face = identify(client, photo)[1]["faces"][0]
        assert face["match"] is None and "mindy_kaling" not in [c["person"] for c in face["candidates"]]
    assert_error(verify(client, val_photos(celebrity_dir, "mindy_kaling")[0], "mindy_kaling"), 404, "unknown_person")


def test_happy_house_door(client, happy_house_dir):
    expected = json.loads((happy_house_dir / "expected.json").read_text())
    for resident, photo in expected["residents"].items():
        assert client.call("POST", "/v1/people", ADMIN_KEY, json_body={"id": resident})[0] == 201
        status, body, _ = client.call("POST", f"/v1/people/{resident}/faces", ADMIN_KEY,
                                      files=[photo_file(happy_house_dir / photo)])
        assert body["accepted"] == 1, body
    for check in expected["verify"]:
        status, body, _ = verify(client, happy_house_dir / check["image"], check["claimed"])
        assert status == 200 and body["match"] is check["door_open"], (check, body)


def test_error_statuses(client, enrolled, celebrity_dir):
    photo = val_photos(celebrity_dir, "madonna")[0]
    # 400: malformed requests
    assert_error(client.call("POST", "/v1/verify", CLIENT_KEY, files=[photo_file(photo)]), 400, "bad_request")
    assert_error(identify(client, photo, top_k="lots"), 400, "bad_request")
    assert_error(identify(client, photo, top_k="0"), 400, "bad_request")
    assert_error(client.call("POST", "/v1/identify", CLIENT_KEY, fields={"top_k": "3"}), 400, "bad_request")
    assert_error(client.call("POST", "/v1/people", ADMIN_KEY, json_body={"name": "no id"}), 400, "bad_request")
    assert_error(client.call("POST", "/v1/people", ADMIN_KEY, raw=b"{not json", content_type="application/json"), 400)
    # 404: unknown person, unknown route
    assert_error(verify(client, photo, "nobody"), 404, "unknown_person")
    assert_error(client.call("GET", "/v1/people/nobody/faces", ADMIN_KEY), 404, "unknown_person")
    assert_error(client.call("POST", "/v1/people/nobody/faces", ADMIN_KEY, files=[photo_file(photo)]), 404)
    assert_error(client.call("GET", "/v1/nothing-here", ADMIN_KEY), 404, "unknown_route")
    # 405 is JSON too
    assert_error(client.call("PUT", "/v1/verify", CLIENT_KEY), 405)
    # 409: the id exists
    assert_error(client.call("POST", "/v1/people", ADMIN_KEY, json_body={"id": "madonna"}), 409, "person_exists")
    # 413: a body over the configured limit
    big = os.urandom(2 * 2**20)
    assert_error(client.call("POST", "/v1/identify", CLIENT_KEY, files=[("photo", "big.jpg", big)]), 413, "too_large")
    # 415: not an image
    assert_error(verify(client, b"hello, I am text\n" * 10, "madonna"), 415, "not_an_image")
    # 422: no face, several faces where one is needed, undecodable photo
    blank = png(Image.new("RGB", (250, 250), (200, 200, 200)))
    assert_error(identify(client, blank), 422, "no_face")
    assert_error(verify(client, blank, "madonna"), 422, "no_face")
    assert_error(verify(client, side_by_side(celebrity_dir), "madonna"), 422, "multiple_faces")
    assert_error(verify(client, photo.read_bytes()[:2000], "madonna"), 422, "truncated")


def test_identify_all_faces(client, enrolled, celebrity_dir):
    status, body, _ = identify(client, side_by_side(celebrity_dir), all_faces="true", top_k="2")
    assert status == 200 and body["faces_found"] == 2 and len(body["faces"]) == 2, body
    assert {f["candidates"][0]["person"] for f in body["faces"]} == {"madonna", "jerry_seinfeld"}
    status, body, _ = identify(client, side_by_side(celebrity_dir))
    assert status == 200 and len(body["faces"]) == 1


def test_every_decision_is_audited(server, client, enrolled, celebrity_dir):
    home = server[1]
    audit = home / "audit.log"
    before = audit.read_text().splitlines() if audit.exists() else []
    photo = val_photos(celebrity_dir, "jerry_seinfeld")[0]
    verify(client, photo, "jerry_seinfeld")
    identify(client, photo, key=ADMIN_KEY)
    verify(client, png(Image.new("RGB", (100, 100))), "jerry_seinfeld")
    lines = [json.loads(line) for line in audit.read_text().splitlines()[len(before):]]
    assert [(l["endpoint"], l["outcome"]) for l in lines] == [("verify", "accepted"), ("identify", "match"),
                                                             ("verify", "error")]
    client_id = "client:" + hashlib.sha256(CLIENT_KEY.encode()).hexdigest()[:8]
    assert lines[0]["key_id"] == client_id and lines[0]["person"] == "jerry_seinfeld"
    assert lines[1]["key_id"].startswith("admin:") and lines[1]["person"] == "jerry_seinfeld"
    assert 0 < lines[0]["distance"] < 0.7 and lines[2]["code"] == "no_face"
    assert all({"time", "endpoint", "key_id", "outcome", "distance", "person"} <= set(l) for l in lines)
    text = audit.read_text() + (home / "server.log").read_text()
    assert CLIENT_KEY not in text and ADMIN_KEY not in text  # keys are never logged
    # The same decisions in the database, through the admin endpoint: newest first, by person and time.
    since = lines[0]["time"]
    status, page, _ = client.call("GET", f"/v1/audit?person=jerry_seinfeld&since={quote(since)}", ADMIN_KEY)
    assert status == 200 and page["total"] == 3, page
    assert [(e["endpoint"], e["outcome"], e["request_id"]) for e in page["events"]] == [
        (l["endpoint"], l["outcome"], l["request_id"]) for l in reversed(lines)]
    assert page["events"][2]["distance"] == lines[0]["distance"] and page["events"][0]["code"] == "no_face"
    status, page, _ = client.call("GET", f"/v1/audit?until={quote(since)}&person=jerry_seinfeld", ADMIN_KEY)
    assert status == 200 and all(e["time"] < since for e in page["events"])
    assert_error(client.call("GET", "/v1/audit", CLIENT_KEY), 403, "forbidden")
    assert_error(client.call("GET", "/v1/audit?since=yesterday", ADMIN_KEY), 400, "bad_request")
    assert_error(client.call("GET", "/v1/audit?limit=0", ADMIN_KEY), 400, "bad_request")


def test_metrics(client, enrolled):
    status, text, headers = client.call("GET", "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    for series in ("facerec_http_requests_total{", "facerec_http_request_duration_seconds_bucket{",
                   'endpoint="/v1/identify"', "facerec_decisions_total{", "facerec_roster_people ",
                   "facerec_roster_faces "):
        assert series in text, series
    assert "\nfacerec_roster_faces_other_models 0\n" in text


def test_metrics_count_the_faces_another_model_encoded(server, client, enrolled):
    from sqlalchemy import select, update

    from service.config import load_config
    from service.roster.database import FaceRow, bump_generation, make_engine, session_factory

    sessions = session_factory(engine := make_engine(load_config(home=str(server[1])).database))

    def relabel(ids, model_id):
        # Bumped, as a real write is: a worker first loading its index in between leaves these faces
        # out, and would not look again after they are put back (not ready for the rest of the module).
        with sessions() as session, session.begin():
            session.execute(update(FaceRow).where(FaceRow.id.in_(ids)).values(model_id=model_id))
            bump_generation(session)

    with sessions() as session:
        ids = list(session.scalars(select(FaceRow.id).order_by(FaceRow.id).limit(3)))
        model_id = session.scalar(select(FaceRow.model_id).limit(1))
    relabel(ids, "older-model")  # as a model switch leaves them
    try:
        status, text, _ = client.call("GET", "/metrics")
        assert status == 200 and "\nfacerec_roster_faces_other_models 3\n" in text, text
    finally:  # the module's roster is shared: put them back
        relabel(ids, model_id)
        engine.dispose()


def test_no_traceback_ever_reaches_a_client(client):
    status, body, _ = client.call("POST", "/v1/people", ADMIN_KEY, json_body={"id": "a/b"})
    assert status == 400 and "Traceback" not in json.dumps(body)
    status, body, headers = client.call("GET", "/v1/people?limit=x", ADMIN_KEY)
    assert status == 400 and headers.get("X-Request-Id")


def test_cli_and_http_give_the_same_json(server, client, enrolled, celebrity_dir, pipeline, capsys, monkeypatch):
    """The same photos through the CLI (on the server's own roster) and through HTTP: the same answers."""
    from service.cli import main

    home = server[1]
    folder = celebrity_dir / "val" / "jerry_seinfeld"
    monkeypatch.chdir(folder)  # the CLI names a photo as given, HTTP by its file name: give the bare name
    name = sorted(p.name for p in folder.iterdir())[1]

    def cli(*argv):
        code = main([*argv, "--home", str(home), "--json"], pipeline=pipeline)
        out = capsys.readouterr().out
        return code, [json.loads(line) for line in out.splitlines()] if argv[0] in ("verify", "identify") else \
            json.loads(out)

    _, lines = cli("identify", name, "--top", "3")
    assert lines[0] == client.call("POST", "/v1/identify", CLIENT_KEY, files=[photo_file(folder / name)],
                                   fields={"top_k": "3"})[1] and "summary" in lines[1]
    for person in ("jerry_seinfeld", "madonna"):
        _, lines = cli("verify", name, "--person", person)
        assert lines[0] == client.call("POST", "/v1/verify", CLIENT_KEY, files=[photo_file(folder / name)],
                                       fields={"person": person})[1]
    assert cli("people", "show", "madonna")[1] == client.call("GET", "/v1/people/madonna", ADMIN_KEY)[1]
    assert cli("faces", "list", "madonna")[1] == client.call("GET", "/v1/people/madonna/faces", ADMIN_KEY)[1]
    assert cli("people", "list")[1]["people"] == client.call("GET", "/v1/people?limit=1000", ADMIN_KEY)[1]["people"]
    # Errors: one shape, one code.
    _, lines = cli("verify", name, "--person", "nobody")
    assert lines[0] == client.call("POST", "/v1/verify", CLIENT_KEY, files=[photo_file(folder / name)],
                                   fields={"person": "nobody"})[1] == {
        "error": {"code": "unknown_person", "message": "'nobody' is not enrolled"}}
    # Enrollment: a photo enrolled once is a duplicate (naming its face) whichever way it comes again.
    train = celebrity_dir / "train" / "madonna"
    monkeypatch.chdir(train)
    again = sorted(p.name for p in train.iterdir())[:2]
    _, enrollment = cli("enroll", "madonna", *again)
    assert enrollment == client.call("POST", "/v1/people/madonna/faces", ADMIN_KEY,
                                     files=[photo_file(train / n) for n in again])[1]
    assert {p["reason"] for p in enrollment["photos"]} <= {"duplicate", "multiple_faces", "no_face"}
