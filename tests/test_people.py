"""The people service on SQLite and on PostgreSQL: searching by id or name in any case and any script,
and ids and times outside what a database can hold refused as bad requests, not failures."""

from __future__ import annotations

import subprocess
import sys

import pytest

from service.app import inputs
from service.errors import FacerecError


@pytest.fixture
def core(make_core, tmp_path, database_url):
    return make_core(tmp_path / "home", database_url=database_url)


def test_search_by_id_or_name_in_any_case_and_script(core):
    for person_id, name in (("E1", "Émile Zola"), ("E2", "Åsa Öberg"), ("ÉQUIPE-3", None), ("E4", "50%_off")):
        core.people.create(person_id, name)
    found = lambda text: [p.id for p in core.people.list(search=text).people]  # noqa: E731
    assert found("émile") == ["E1"] and found("ÉMILE") == ["E1"] and found("öberg") == ["E2"]
    assert found("équipe") == ["ÉQUIPE-3"] and found("  zola ") == ["E1"]
    assert found("%") == ["E4"] and found("_o") == ["E4"] and found("0%_") == ["E4"]  # wildcards are literal
    assert found("") == ["E1", "E2", "E4", "ÉQUIPE-3"]
    page = core.people.list(0, 1, search="e")
    assert page.total == 4 and len(page.people) == 1


def test_out_of_range_ids_and_times_are_bad_requests(core):
    core.people.create("E1")
    for face_id in (0, -1, inputs.MAX_FACE_ID + 1, 2**63):
        with pytest.raises(FacerecError) as refused:
            core.people.remove_face(face_id)
        assert refused.value.code == "bad_request"
    for moment in ("0001-01-01T00:00+01:00", "9999-12-31T23:00-05:00", "yesterday"):
        with pytest.raises(FacerecError):
            inputs.moment(moment)


def test_replicas_starting_together_migrate_once(postgres_server, project_root):
    """Three processes opening a new PostgreSQL roster at once: one migrates, the others wait for it and
    find nothing left to do (Alembic keeps process-wide state, hence processes, not threads)."""
    url = postgres_server.new_database()
    command = [sys.executable, "-c", "import sys; from service.roster.database import upgrade_database; "
                                     "upgrade_database(sys.argv[1])", url]
    starts = [subprocess.Popen(command, cwd=project_root, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    errors = [(start.wait(timeout=120), start.stderr.read()[-2000:]) for start in starts]
    assert [code for code, _ in errors] == [0, 0, 0], errors
