"""Two replicas, nothing shared but a PostgreSQL database: two `facerec serve` processes with their own
data homes and ports. What one writes is in the other's very next answer; racing writes get one
winner and never a 500; re-encoding the roster while both serve gives no error and no wrong answer."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import update

from http_client import free_port, photo_file, running_server
from service.roster.database import FaceRow, bump_generation, make_engine, session_factory

ADMIN_KEY, CLIENT_KEY = "admin-" + uuid.uuid4().hex, "client-" + uuid.uuid4().hex
PEOPLE = ["ben_afflek", "jerry_seinfeld", "madonna"]


@pytest.fixture(scope="module")
def database(postgres_server) -> str:
    return postgres_server.new_database()


@pytest.fixture(scope="module")
def replicas(tmp_path_factory, project_root, database):
    """(replica A, replica B), one worker each, on the same PostgreSQL database."""
    if not (project_root / "models" / "facenet_keras.h5").is_file():
        pytest.skip("FaceNet weights not fetched (make models)")
    env = {"FACEREC_DATABASE_URL": database, "FACEREC_API_KEYS": f"admin:{ADMIN_KEY},client:{CLIENT_KEY}",
           "FACEREC_SERVER__WORKERS": "1"}
    with running_server(tmp_path_factory.mktemp("replica-a"), free_port(), env, project_root) as a, \
            running_server(tmp_path_factory.mktemp("replica-b"), free_port(), env, project_root) as b:
        yield a, b


def train(celebrity_dir: Path, person: str, count: int = 6) -> list[Path]:
    return sorted((celebrity_dir / "train" / person).iterdir())[:count]


def val(celebrity_dir: Path, person: str) -> list[Path]:
    return sorted((celebrity_dir / "val" / person).iterdir())


def enroll(replica, person: str, photos: list[Path]) -> None:
    assert replica.call("POST", "/v1/people", ADMIN_KEY, json_body={"id": person})[0] == 201
    status, body, _ = replica.call("POST", f"/v1/people/{person}/faces", ADMIN_KEY, files=[photo_file(p) for p in photos])
    assert status == 201 and body["accepted"] >= 3, body


def nearest(replica, photo: Path) -> dict:
    status, body, _ = replica.call("POST", "/v1/identify", CLIENT_KEY, files=[photo_file(photo)])
    assert status == 200, body
    return body["faces"][0]


@pytest.fixture(scope="module")
def enrolled(replicas, celebrity_dir):
    a, _ = replicas
    for person in PEOPLE:
        enroll(a, person, train(celebrity_dir, person))


def test_an_enrollment_through_one_is_in_the_others_very_next_answer(replicas, enrolled, celebrity_dir):
    a, b = replicas
    for person in PEOPLE:  # enrolled through A only
        assert nearest(b, val(celebrity_dir, person)[1])["candidates"][0]["person"] == person
    probe = val(celebrity_dir, "mindy_kaling")[1]
    assert "mindy_kaling" not in [c["person"] for c in nearest(b, probe)["candidates"]]
    enroll(b, "mindy_kaling", train(celebrity_dir, "mindy_kaling"))
    assert nearest(a, probe)["match"] == "mindy_kaling"


def test_a_delete_through_one_is_gone_from_the_others_next_answer(replicas, enrolled, celebrity_dir):
    a, b = replicas
    probe = val(celebrity_dir, "elton_john")[0]
    enroll(a, "elton_john", train(celebrity_dir, "elton_john"))
    assert nearest(b, probe)["candidates"][0]["person"] == "elton_john"
    assert b.call("DELETE", "/v1/people/elton_john", ADMIN_KEY)[0] == 200
    assert "elton_john" not in [c["person"] for c in nearest(a, probe)["candidates"]]
    assert a.call("GET", "/v1/people/elton_john", ADMIN_KEY)[0] == 404


def test_the_same_person_created_through_both_at_once_one_wins(replicas):
    a, b = replicas
    for attempt in range(8):
        person = f"race-{attempt}-{uuid.uuid4().hex[:6]}"
        start = threading.Barrier(2)

        def create(replica):
            start.wait()
            return replica.call("POST", "/v1/people", ADMIN_KEY, json_body={"id": person})

        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(create, (a, b)))
        assert sorted(status for status, _, _ in answers) == [201, 409], answers
        assert [body["error"]["code"] for status, body, _ in answers if status == 409] == ["person_exists"]


def test_reembedding_while_both_serve_gives_no_error_and_no_wrong_answer(replicas, enrolled, celebrity_dir, database,
                                                                        tmp_path, project_root):
    a, b = replicas
    probes = [(person, val(celebrity_dir, person)[1]) for person in PEOPLE]
    before = {person: nearest(a, photo)["distance"] for person, photo in probes}
    # A model change, as a new release would make it: every encoding is now another model's.
    engine = make_engine(database)
    with session_factory(engine)() as session, session.begin():
        session.execute(update(FaceRow).values(model_id="older-model", encoding=b"\0" * 512))
        bump_generation(session)
    engine.dispose()

    answers, stop = [], threading.Event()

    def ask(replica):  # clients keep asking through both replicas while the roster is re-encoded
        while not stop.is_set():
            for person, photo in probes:
                status, body, _ = replica.call("POST", "/v1/identify", CLIENT_KEY, files=[photo_file(photo)])
                answers.append((person, status, body))

    askers = [threading.Thread(target=ask, args=(replica,)) for replica in (a, b)]
    for thread in askers:
        thread.start()
    try:  # from a third host's empty home: the kept crops are in the database
        done = subprocess.run([str(Path(sys.executable).parent / "facerec"), "reindex", "--reembed", "--json",
                               "--home", str(tmp_path / "third-host")], capture_output=True, text=True,
                              timeout=600, cwd=project_root,
                              env={**os.environ, "FACEREC_DATABASE_URL": database, "TF_CPP_MIN_LOG_LEVEL": "2"})
    finally:
        stop.set()
        for thread in askers:
            thread.join()
    assert done.returncode == 0, done.stderr[-3000:]
    assert answers and all(status == 200 for _, status, _ in answers), [a for a in answers if a[1] != 200][:3]
    wrong = [(person, body["faces"][0]["match"]) for person, _, body in answers
             if body["faces"][0]["match"] not in (person, None)]
    assert wrong == []  # during the change a face is its own person or nobody, never someone else
    for replica in (a, b):  # and after it, every answer is what it was
        for person, photo in probes:
            face = nearest(replica, photo)
            assert face["candidates"][0]["person"] == person
            assert abs(face["distance"] - before[person]) < 1e-4
