"""`facerec backup` and `facerec restore`: a whole roster out to one file and back, on SQLite and
PostgreSQL, across the two, and never onto a roster by accident."""

from __future__ import annotations

import json
import sqlite3


from service.app import Photo
from service.cli import main

PEOPLE = ("ben_afflek", "elton_john", "madonna")


def photos(celebrity_dir, split: str, person: str) -> list[Photo]:
    return [Photo(p.name, p.read_bytes()) for p in sorted((celebrity_dir / split / person).iterdir())]


def enroll_celebrities(core, celebrity_dir, people=PEOPLE) -> None:
    for person in people:
        core.enrollment.enroll(person, photos(celebrity_dir, "train", person)[:3])
    core.audit.record("verify", "accepted", people[0], 0.31)


def answers(core, celebrity_dir) -> list:
    """Who each validation photo of the five celebrities is, with distances: what a restore must keep."""
    found = []
    for person in sorted(p.name for p in (celebrity_dir / "val").iterdir()):
        for photo in photos(celebrity_dir, "val", person)[:2]:
            found.append(core.recognition.identify(photo).to_json())
    return found


def roster_json(core) -> dict:
    people = [p.to_json() for p in core.people.list().people]
    faces = {p["id"]: core.people.faces(p["id"]).to_json() for p in people}
    crops = {face["id"]: core.people.crop_jpeg(person, face["id"])
             for person, listed in faces.items() for face in listed["faces"]}
    return {"people": people, "faces": faces, "crops": crops, "audit": core.audit.list().to_json()}


def cli(capsys, *argv) -> tuple[int, dict]:
    code = main([*argv, "--json"])
    return code, json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def wipe(core) -> None:
    for person in [p.id for p in core.people.list().people]:
        core.people.remove(person)
    core.audit.purge(older_than_days=0)


def test_a_backup_restored_after_everything_was_deleted_gives_the_same_answers(
        make_core, database_url, celebrity_dir, tmp_path, capsys, monkeypatch):
    home, url = tmp_path / "home", database_url or f"sqlite:///{tmp_path / 'roster-db.sqlite'}"
    monkeypatch.setenv("FACEREC_DATABASE_URL", url)  # the CLI's roster is this one
    core = make_core(home, database_url=url)
    enroll_celebrities(core, celebrity_dir)
    before, kept = answers(core, celebrity_dir), roster_json(core)

    code, report = cli(capsys, "backup", str(tmp_path / "roster.db"), "--home", str(home))
    assert code == 0 and report["people"] == 3 and report["faces"] == report["crops"] == 9, report
    assert report["audit_events"] == 1 and not list(tmp_path.glob(".roster.db.*")), report

    wipe(core)
    assert core.people.list().total == 0 and answers(core, celebrity_dir) != before

    code, report = cli(capsys, "restore", str(tmp_path / "roster.db"), "--home", str(home))
    assert code == 0 and report["restored"] == str(tmp_path / "roster.db") and report["faces"] == 9, report
    restored = make_core(tmp_path / "other-home", database_url=url)  # a fresh process, a fresh index
    assert answers(restored, celebrity_dir) == before and roster_json(restored) == kept
    assert answers(core, celebrity_dir) == before  # the process that deleted everything follows the restore

    highest = max(f["id"] for listed in kept["faces"].values() for f in listed["faces"])
    added = core.enrollment.enroll("mindy_kaling", photos(celebrity_dir, "train", "mindy_kaling")[:1])
    assert added.photos[0].face_id > highest  # ids are never reused, not even after a restore


def test_a_sqlite_backup_moves_the_service_onto_postgresql(make_core, postgres_server, celebrity_dir, tmp_path):
    sqlite_core = make_core(tmp_path / "single-host", database_url="")
    enroll_celebrities(sqlite_core, celebrity_dir)
    sqlite_core.upkeep.backup(tmp_path / "roster.db")
    server_core = make_core(tmp_path / "replica", database_url=postgres_server.new_database())
    server_core.upkeep.restore(tmp_path / "roster.db")
    assert answers(server_core, celebrity_dir) == answers(sqlite_core, celebrity_dir)
    assert roster_json(server_core) == roster_json(sqlite_core)
    server_core.upkeep.backup(tmp_path / "back.db")  # and back again, from the server
    returned = make_core(tmp_path / "returned", database_url=f"sqlite:///{tmp_path / 'returned.db'}")
    returned.upkeep.restore(tmp_path / "back.db")
    assert roster_json(returned) == roster_json(sqlite_core)


def test_another_process_never_answers_from_ids_a_restore_gave_to_other_faces(
        make_core, database_url, celebrity_dir, tmp_path):
    """Roster B is replaced by a backup of roster A, whose face ids are the same numbers. A second process
    on B, whose index held B's faces under those ids, must not name A's people for B's faces."""
    site_a = make_core(tmp_path / "a", database_url=f"sqlite:///{tmp_path / 'a.db'}")
    enroll_celebrities(site_a, celebrity_dir, ("madonna",))
    site_a.upkeep.backup(tmp_path / "a-backup.db")

    url = database_url or f"sqlite:///{tmp_path / 'b.db'}"
    site_b = make_core(tmp_path / "b", database_url=url)
    enroll_celebrities(site_b, celebrity_dir, ("elton_john",))
    replica = make_core(tmp_path / "b-replica", database_url=url)
    elton = photos(celebrity_dir, "val", "elton_john")[0]
    assert replica.recognition.identify(elton).faces[0].match == "elton_john"
    assert {f.id for f in site_a.people.faces("madonna").faces} == {f.id for f in site_b.people.faces("elton_john").faces}

    site_b.upkeep.restore(tmp_path / "a-backup.db", replace=True)
    assert replica.recognition.identify(elton).faces[0].match is None
    madonna = photos(celebrity_dir, "val", "madonna")[0]
    assert replica.recognition.identify(madonna).faces[0].match == "madonna"
    restarted = make_core(tmp_path / "b", database_url=url)  # b's saved index is of the old epoch
    assert restarted.recognition.identify(elton).faces[0].match is None


def test_a_restore_never_lands_on_a_roster_by_accident(make_core, celebrity_dir, tmp_path, capsys):
    home = tmp_path / "home"
    core = make_core(home, database_url="")
    enroll_celebrities(core, celebrity_dir, ("madonna",))
    assert cli(capsys, "backup", str(tmp_path / "roster.db"), "--home", str(home))[0] == 0
    kept = roster_json(core)

    code, body = cli(capsys, "restore", str(tmp_path / "roster.db"), "--home", str(home))
    assert code == 2 and "--replace" in body["error"]["message"], body
    code, body = cli(capsys, "backup", str(tmp_path / "roster.db"), "--home", str(home))
    assert code == 2 and "exists" in body["error"]["message"], body

    (tmp_path / "text.db").write_text("people,faces\n")
    (tmp_path / "empty.db").write_bytes(b"")
    sqlite3.connect(tmp_path / "other.db").execute("CREATE TABLE t (x)").connection.commit()
    newer = tmp_path / "newer.db"
    newer.write_bytes((tmp_path / "roster.db").read_bytes())
    with sqlite3.connect(newer) as db:
        db.execute("UPDATE alembic_version SET version_num = '9999'")
    truncated = tmp_path / "truncated.db"
    truncated.write_bytes((tmp_path / "roster.db").read_bytes()[:5000])
    for bad, says in (("missing.db", "no such file"), ("text.db", "not a facerec backup"),
                      ("empty.db", "not a facerec backup"), ("other.db", "not a facerec backup"),
                      ("newer.db", "newer version"), ("truncated.db", "not a facerec backup")):
        code, body = cli(capsys, "restore", str(tmp_path / bad), "--home", str(home), "--replace")
        assert code == 2 and says in body["error"]["message"], (bad, body)
    assert roster_json(core) == kept
