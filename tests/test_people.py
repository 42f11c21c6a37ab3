"""The people service on SQLite and on PostgreSQL: searching by id or name in any case and any script,
and ids and times outside what a database can hold refused as bad requests, not failures."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from service.app import inputs

MIGRATION_LOCK = 4_711_042  # migrations/env.py
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


def test_a_replica_migrating_waits_for_another_one(postgres_server, project_root):
    """Replicas starting together on a new PostgreSQL roster take turns at migrating: while one holds the
    migration lock, another's start waits for it, and then finds its work done."""
    import psycopg

    url = postgres_server.new_database()
    dsn = f"host=127.0.0.1 port={postgres_server.port} user=postgres dbname={url.rsplit('/', 1)[1]}"
    command = [sys.executable, "-c", "import sys; from service.roster.database import upgrade_database; "
                                     "upgrade_database(sys.argv[1])", url]
    with psycopg.connect(dsn, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))  # as a replica migrating right now
        waiting = subprocess.Popen(command, cwd=project_root, stderr=subprocess.PIPE, text=True)
        time.sleep(3)
        assert waiting.poll() is None  # still waiting for the lock, not migrating beside it
        holder.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
    assert waiting.wait(timeout=60) == 0, waiting.stderr.read()[-2000:]
