"""The persistent roster through the `facerec` command line, on real photos, a real FAISS index and a
real database (a SQLite file, then a PostgreSQL server): import, identify, verify, remove, reindex,
re-embed, and a SIGKILL mid-import."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select, update

from index import FaceIndex, read_manifest
from service.cli import EXIT_INPUT_ERROR, EXIT_MATCH, EXIT_NO_MATCH, main
from service.config import load_config
from service.roster.roster import Roster
from service.roster.database import (
    CropRow, FaceRow, bump_generation, current_generation, make_engine, session_factory,
)

PEOPLE = ["ben_afflek", "elton_john", "jerry_seinfeld", "madonna", "mindy_kaling"]


def cli(capsys, pipeline, home, *argv):
    code = main([*argv, "--home", str(home)], pipeline=pipeline)
    out, err = capsys.readouterr()
    return code, out, err


def db_state(home: Path, model_id: str):
    """(face ids in the database for this model, the roster generation)."""
    engine = make_engine(load_config(home=str(home)).database)
    with session_factory(engine)() as session:
        ids = set(session.scalars(select(FaceRow.id).where(FaceRow.model_id == model_id)))
        generation = current_generation(session)
    engine.dispose()
    return ids, generation


def kept_crops(home: Path) -> int:
    engine = make_engine(load_config(home=str(home)).database)
    with session_factory(engine)() as session:
        count = session.scalar(select(func.count()).select_from(CropRow))
    engine.dispose()
    return count


def assert_index_matches_database(home: Path, model_id: str):
    """The index a search uses holds exactly the database's faces; a saved one is never ahead of it."""
    ids, generation = db_state(home, model_id)
    saved, manifest = FaceIndex.load(home / "index", model_id=model_id), read_manifest(home / "index")
    assert manifest.generation <= generation
    if manifest.generation == generation:
        assert set(saved.ids().tolist()) == ids
    roster = Roster(load_config(home=str(home)), model_id)
    try:
        assert set(roster.index.face_index.ids().tolist()) == ids and roster.index.generation == generation
    finally:
        roster.close()


@pytest.fixture(scope="module")
def home(tmp_path_factory, pipeline, celebrity_dir, module_database_url):
    """A roster with the 5-celebrity train photos imported through the CLI."""
    home = tmp_path_factory.mktemp("roster-home")
    code = main(["import", str(celebrity_dir / "train"), "--home", str(home), "--json", "--batch-size", "16"],
                pipeline=pipeline)
    assert code in (EXIT_MATCH, EXIT_NO_MATCH)  # 1: a few group photos are refused, by design
    return home


def val_photos(celebrity_dir, person):
    return sorted((celebrity_dir / "val" / person).iterdir())


def answer(out: str) -> dict:
    """The one per-photo answer of a --json verify / identify run (a summary line follows it)."""
    return json.loads(out.splitlines()[0])


def test_import_enrolls_everyone_and_is_idempotent(capsys, pipeline, home, celebrity_dir):
    code, out, _ = cli(capsys, pipeline, home, "people", "list", "--json")
    people = {p["id"]: p["faces"] for p in json.loads(out)["people"]}
    assert sorted(people) == PEOPLE and all(n >= 10 for n in people.values())
    before = db_state(home, pipeline.model_id)
    code, out, _ = cli(capsys, pipeline, home, "import", str(celebrity_dir / "train"), "--json")
    summary = json.loads(out.strip().splitlines()[-1])["summary"]
    assert summary["accepted"] == 0 and summary["duplicate"] == sum(people.values())
    outcomes = [json.loads(line) for line in out.strip().splitlines()[:-1]]
    duplicates = [o for o in outcomes if o["reason"] == "duplicate"]
    assert len(duplicates) == sum(people.values()) and all(o["status"] == "refused" for o in outcomes)
    assert all(isinstance(o["face_id"], int) for o in duplicates)  # which face the photo already is
    assert db_state(home, pipeline.model_id) == before  # nothing written, generation unchanged
    assert_index_matches_database(home, pipeline.model_id)


def test_identify_every_val_photo(capsys, pipeline, home, celebrity_dir):
    for person in PEOPLE:
        for photo in val_photos(celebrity_dir, person):
            code, out, _ = cli(capsys, pipeline, home, "identify", str(photo), "--json", "--top", "5")
            face = answer(out)["faces"][0]
            assert face["candidates"][0]["person"] == person, (photo.name, face)
            assert face["match"] in (person, None)  # never someone else
            assert code == (EXIT_MATCH if face["match"] else EXIT_NO_MATCH)
            assert len({c["person"] for c in face["candidates"]}) == len(face["candidates"])


def test_verify_true_and_false_claims(capsys, pipeline, home, celebrity_dir):
    probe = str(val_photos(celebrity_dir, "jerry_seinfeld")[0])
    code, out, _ = cli(capsys, pipeline, home, "verify", probe, "jerry_seinfeld", "--json")
    assert code == EXIT_MATCH and answer(out)["match"] is True
    code, out, _ = cli(capsys, pipeline, home, "verify", probe, "madonna", "--json")
    assert code == EXIT_NO_MATCH and answer(out)["distance"] > 0.8  # the threshold (0.7) and then some
    code, out, _ = cli(capsys, pipeline, home, "verify", probe, "nobody", "--json")
    assert code == EXIT_INPUT_ERROR and json.loads(out)["error"]["code"] == "unknown_person"


def test_enroll_reports_each_photo_and_refuses_cleanly(database_url, capsys, pipeline, tmp_path, celebrity_dir):
    home = tmp_path / "home"
    good = val_photos(celebrity_dir, "madonna")[:2]
    bad = tmp_path / "notes.jpg"
    bad.write_text("not a photo")
    code, out, _ = cli(capsys, pipeline, home, "enroll", "E042", *map(str, good), str(bad), "--name", "M.", "--json")
    photos = json.loads(out)["photos"]
    assert [p["status"] for p in photos] == ["accepted", "accepted", "refused"]
    assert photos[2]["reason"] == "not_an_image" and code == EXIT_NO_MATCH
    code, out, _ = cli(capsys, pipeline, home, "enroll", "E042", str(good[0]), "--json")
    again = json.loads(out)["photos"][0]
    assert (again["status"], again["reason"], again["face_id"]) == ("refused", "duplicate", photos[0]["face_id"])
    assert code == EXIT_MATCH  # the photo is enrolled, as asked
    # A new person whose every photo is refused is not created.
    code, out, _ = cli(capsys, pipeline, home, "enroll", "E043", str(bad), "--json")
    assert code == EXIT_INPUT_ERROR
    code, out, _ = cli(capsys, pipeline, home, "people", "list", "--json")
    assert [p["id"] for p in json.loads(out)["people"]] == ["E042"]
    # A request that enrolls nothing changes nothing, not even the name it carries.
    code, _, _ = cli(capsys, pipeline, home, "enroll", "E042", str(bad), "--name", "Someone else")
    assert code == EXIT_INPUT_ERROR
    code, out, _ = cli(capsys, pipeline, home, "people", "show", "E042", "--json")
    assert json.loads(out)["name"] == "M."
    assert_index_matches_database(home, pipeline.model_id)


def test_an_interrupted_import_leaves_no_faceless_people(database_url, capsys, pipeline, tmp_path, celebrity_dir, monkeypatch):
    home = tmp_path / "home"

    def interrupted(faces):  # fault injection: Ctrl-C while the first batch is being encoded
        raise KeyboardInterrupt

    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(pipeline, "encode", interrupted)
        main(["import", str(celebrity_dir / "train"), "--home", str(home), "--json"], pipeline=pipeline)
    code, out, _ = cli(capsys, pipeline, home, "people", "list", "--json")
    assert code == EXIT_MATCH and json.loads(out)["people"] == []


def test_remove_face_and_person(database_url, capsys, pipeline, tmp_path, celebrity_dir):
    home = tmp_path / "home"
    photos = sorted((celebrity_dir / "train" / "elton_john").iterdir())[:3]
    cli(capsys, pipeline, home, "enroll", "elton", *map(str, photos))
    cli(capsys, pipeline, home, "enroll", "ben", *map(str, sorted((celebrity_dir / "train" / "ben_afflek").iterdir())[:3]))
    code, out, _ = cli(capsys, pipeline, home, "faces", "list", "elton", "--json")
    faces = json.loads(out)["faces"]
    code, out, _ = cli(capsys, pipeline, home, "faces", "remove", str(faces[0]["id"]), "--json")
    assert code == EXIT_MATCH
    assert json.loads(out) == {"deleted": "face", "person": "elton", "face_id": faces[0]["id"], "faces_removed": 1, "audit_events_erased": 0}
    assert_index_matches_database(home, pipeline.model_id)
    probe = str(val_photos(celebrity_dir, "elton_john")[0])
    code, out, _ = cli(capsys, pipeline, home, "identify", probe, "--json")
    assert answer(out)["faces"][0]["candidates"][0]["person"] == "elton"
    assert kept_crops(home) == len(faces) - 1 + 3  # elton's left and ben's, in the database
    code, out, _ = cli(capsys, pipeline, home, "people", "remove", "elton", "--json")
    assert code == EXIT_MATCH
    assert json.loads(out) == {"deleted": "person", "person": "elton", "face_id": None,
                               "faces_removed": len(faces) - 1, "audit_events_erased": 0}
    assert kept_crops(home) == 3 and not (home / "crops").exists()  # elton's went with him; nothing on disk
    code, out, _ = cli(capsys, pipeline, home, "identify", probe, "--json")
    face = answer(out)["faces"][0]
    assert code == EXIT_NO_MATCH and face["match"] is None
    assert [c["person"] for c in face["candidates"]] == ["ben"]
    code, out, _ = cli(capsys, pipeline, home, "people", "show", "elton", "--json")
    assert code == EXIT_INPUT_ERROR and json.loads(out)["error"]["code"] == "unknown_person"
    code, out, _ = cli(capsys, pipeline, home, "faces", "remove", "99999", "--json")
    assert code == EXIT_INPUT_ERROR and json.loads(out)["error"]["code"] == "unknown_face"
    assert_index_matches_database(home, pipeline.model_id)


def test_missing_or_corrupt_index_is_rebuilt_from_the_database(database_url, capsys, pipeline, tmp_path, celebrity_dir, caplog):
    home = tmp_path / "home"
    cli(capsys, pipeline, home, "enroll", "mindy", *map(str, val_photos(celebrity_dir, "mindy_kaling")[:3]))
    for victim in (home / "index").iterdir():
        victim.write_bytes(b"garbage")
    probe = str(val_photos(celebrity_dir, "mindy_kaling")[4])
    with caplog.at_level("WARNING"):
        code, out, _ = cli(capsys, pipeline, home, "identify", probe, "--json")
    assert "rebuilding it from the database" in caplog.text
    assert answer(out)["faces"][0]["candidates"][0]["person"] == "mindy"
    assert_index_matches_database(home, pipeline.model_id)


def test_an_index_path_that_is_a_file_is_repaired(database_url, capsys, pipeline, tmp_path, celebrity_dir, caplog):
    home = tmp_path / "home"
    cli(capsys, pipeline, home, "enroll", "mindy", *map(str, val_photos(celebrity_dir, "mindy_kaling")[:2]))
    shutil.rmtree(home / "index")
    (home / "index").write_text("not a folder")
    with caplog.at_level("WARNING"):
        code, out, err = cli(capsys, pipeline, home, "identify", str(val_photos(celebrity_dir, "mindy_kaling")[3]),
                             "--json")
    assert answer(out)["faces"][0]["candidates"][0]["person"] == "mindy" and "Traceback" not in err
    assert "was not a folder" in caplog.text and (home / "index").is_dir()
    assert [p.read_text() for p in home.glob("index.not-a-folder-*")] == ["not a folder"]  # kept, not deleted
    assert_index_matches_database(home, pipeline.model_id)


def test_reindex_reports_vectors(capsys, pipeline, home):
    code, out, _ = cli(capsys, pipeline, home, "reindex", "--json")
    report = json.loads(out)
    ids, generation = db_state(home, pipeline.model_id)
    assert code == EXIT_MATCH and report["vectors"] == len(ids) and report["generation"] == generation


def test_reembed_after_a_model_change_is_resumable(database_url, capsys, pipeline, tmp_path, celebrity_dir, make_core,
                                                   monkeypatch):
    home = tmp_path / "home"
    photos = sorted((celebrity_dir / "train" / "madonna").iterdir())[:6]
    cli(capsys, pipeline, home, "enroll", "madonna", *map(str, photos))
    config = load_config(home=str(home))
    engine = make_engine(config.database)
    with session_factory(engine)() as session, session.begin():
        original = {f.id: f.encoding for f in session.scalars(select(FaceRow))}
        session.execute(update(FaceRow).values(model_id="older-model", encoding=b"\0" * 512))
        bump_generation(session)  # as every writer does
    engine.dispose()
    # On a shared database, re-encode from another host's empty home: the crops are in the database.
    core = make_core(tmp_path / "fresh-host" if database_url else home, database_url=database_url)
    assert core.roster.count_stale_faces() == 6 and core.roster.searchable_faces() == 0

    calls = []
    encode = pipeline.encoder.encode

    def failing_encode(crops):  # fault injection: the process dies on the second batch
        calls.append(len(crops))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return encode(crops)

    monkeypatch.setattr(pipeline.encoder, "encode", failing_encode)
    with pytest.raises(KeyboardInterrupt):
        core.upkeep.reindex(reembed=True, batch_size=2)
    assert core.roster.count_stale_faces() == 4  # the first batch stayed done
    monkeypatch.setattr(pipeline.encoder, "encode", encode)
    report = core.upkeep.reindex(reembed=True, batch_size=2)
    assert (report.reembedded, report.missing_crops, report.vectors) == (4, (), 6)
    assert core.roster.count_stale_faces() == 0
    with core.roster.sessions() as session:
        for face in session.scalars(select(FaceRow)):
            np.testing.assert_allclose(np.frombuffer(face.encoding, "<f4"), np.frombuffer(original[face.id], "<f4"),
                                       atol=1e-4)  # the kept crops give back the same encodings
    core.close()
    assert_index_matches_database(home, pipeline.model_id)


def test_faces_of_another_model_are_reported_whenever_the_index_loads(database_url, capsys, pipeline, tmp_path,
                                                                       celebrity_dir, make_core, caplog, monkeypatch):
    """After a model switch (precision, head) the saved index still loads and catches up, and every
    face drops out of search: the operator is told why and what to run, not left with "not in the
    database" for everyone."""
    home = tmp_path / "home"
    cli(capsys, pipeline, home, "enroll", "madonna", *map(str, sorted((celebrity_dir / "train" / "madonna").iterdir())[:2]))
    engine = make_engine(load_config(home=str(home)).database)
    with session_factory(engine)() as session, session.begin():
        session.execute(update(FaceRow).values(model_id="older-model"))
        bump_generation(session)
    engine.dispose()
    core = make_core(home, database_url=database_url)
    index = core.roster.index

    def no_rebuild(*args, **kwargs):  # a rebuild says it too: this is about the saved index loading
        raise AssertionError("the saved index was rebuilt, not loaded")

    monkeypatch.setattr(index, "rebuild", no_rebuild)
    with caplog.at_level("WARNING"):
        index.load()
    assert len(index) == 0
    assert "2 faces were encoded by another model and are not searchable; run `facerec reindex --reembed`" in caplog.text


def test_sigkill_during_import_loses_nothing_reported(database_url, tmp_path, celebrity_dir, pipeline, capsys):
    home = tmp_path / "home"
    command = [str(Path(sys.executable).parent / "facerec"), "import", str(celebrity_dir / "train"),
               "--home", str(home), "--json", "--batch-size", "4"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    reported = []
    for line in proc.stdout:
        outcome = json.loads(line)
        if outcome.get("status") == "accepted":
            reported.append(outcome["face_id"])
        if len(reported) >= 10:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL and len(reported) >= 10

    ids, _ = db_state(home, pipeline.model_id)
    assert set(reported) <= ids  # everything reported as enrolled survived the kill
    # The next start repairs the index, then the import finishes the rest.
    code, out, _ = cli(capsys, pipeline, home, "import", str(celebrity_dir / "train"), "--json")
    summary = json.loads(out.strip().splitlines()[-1])["summary"]
    assert summary["duplicate"] >= len(reported)
    ids, _ = db_state(home, pipeline.model_id)
    assert len(ids) == summary["accepted"] + summary["duplicate"]
    assert_index_matches_database(home, pipeline.model_id)
    assert kept_crops(home) == len(ids)  # a crop for every face, none left over
    leftovers = [p for p in home.rglob("*") if p.is_file() and (p.name.startswith(".") or p.suffix == ".partial")]
    assert leftovers == [] and not (home / "crops").exists()  # crops live in the database now


def test_a_new_person_created_meanwhile_elsewhere_gets_the_faces(database_url, pipeline, tmp_path, celebrity_dir,
                                                                  make_core, monkeypatch):
    """A person is created with their first faces, in the same transaction; when another process creates
    them between this one's look-up and its insert, the unique id refuses the insert and the faces go
    to the person that process made."""
    from service.app import Photo

    home = tmp_path / "home"
    here, elsewhere = make_core(home, database_url=database_url), make_core(home, database_url=database_url)
    roster = here.roster
    real_owners = roster._owners
    raced = []

    def racing_owners(session, faces):  # fault injection: the other process creates the person just now
        real_flush = session.flush

        def flush(*args, **kwargs):
            if not raced and session.new:  # the insert of the person looked up and not found
                raced.append(elsewhere.people.create("madonna", "Madonna (elsewhere)"))
            return real_flush(*args, **kwargs)

        monkeypatch.setattr(session, "flush", flush)
        return real_owners(session, faces)

    monkeypatch.setattr(roster, "_owners", racing_owners)
    real_add, batches = roster.add_faces, []
    monkeypatch.setattr(roster, "add_faces", lambda faces: batches.append(len(faces)) or real_add(faces))
    photos = [Photo.from_path(p) for p in val_photos(celebrity_dir, "madonna")[:2]]
    result = here.enrollment.enroll("madonna", photos, name="Madonna")
    assert raced and [p.status for p in result.photos] == ["accepted", "accepted"]
    assert batches == [2, 1, 1]  # the batch was refused by the unique id, then stored a face at a time
    assert here.roster.get_person("madonna").name == "Madonna (elsewhere)"  # theirs, not a second one
    assert [f.id for f in here.roster.faces_of("madonna")] == [p.face_id for p in result.photos]
