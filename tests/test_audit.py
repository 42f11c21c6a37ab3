"""The record of decisions on SQLite and on PostgreSQL: every decision in the database and in the local
JSON-lines log, read back by time range and person, newest first, and purged past the retention."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from service.errors import FacerecError
from service.roster.database import AuditRow


@pytest.fixture
def core(make_core, tmp_path, database_url):
    return make_core(tmp_path / "home", database_url=database_url)


def backdate(core, days: int) -> None:
    """Move every recorded decision ``days`` into the past (as if recorded then)."""
    with core.roster.engine.begin() as connection:
        for event_id, when in connection.execute(select(AuditRow.id, AuditRow.time)).all():
            connection.execute(update(AuditRow).where(AuditRow.id == event_id).values(time=when - timedelta(days=days)))


def test_decisions_are_recorded_read_and_purged(core):
    core.audit.record("verify", "accepted", "ada", 0.4123456789, key_id="client:1234abcd", request_id="r1")
    backdate(core, 100)
    core.audit.record("identify", "match", "bob", 0.2, key_id="admin:9999ffff", request_id="r2")
    core.audit.record("verify", "error", "ada", None, code="no_face", request_id="r3")

    page = core.audit.list()
    assert [e.request_id for e in page.events] == ["r3", "r2", "r1"] and page.total == 3  # newest first
    first = page.events[2].to_json()
    assert first["distance"] == 0.412346 and first["key_id"] == "client:1234abcd" and first["outcome"] == "accepted"
    assert [e.request_id for e in core.audit.list(person="ada").events] == ["r3", "r1"]
    recent = core.audit.list(since=datetime.now(UTC) - timedelta(days=1))
    assert [e.request_id for e in recent.events] == ["r3", "r2"]
    old = core.audit.list(until=datetime.now(UTC) - timedelta(days=99))
    assert [e.request_id for e in old.events] == ["r1"]
    assert [e.request_id for e in core.audit.list(offset=1, limit=1).events] == ["r2"]

    lines = [json.loads(line) for line in core.config.audit_log.read_text().splitlines()]
    assert [line["request_id"] for line in lines] == ["r1", "r2", "r3"]  # the local log, as it happened
    assert lines[2]["code"] == "no_face" and lines[2]["distance"] is None

    purged = core.audit.purge()  # retention 90 days: r1 is 100 days old
    assert purged.purged == 1 and [e.request_id for e in core.audit.list().events] == ["r3", "r2"]
    assert core.audit.purge(older_than_days=0).purged == 2
    assert len(core.config.audit_log.read_text().splitlines()) == 3  # the local log is not the database's to purge


def test_bad_audit_queries(core):
    for bad in ({"person": "a/b"}, {"limit": 0}, {"limit": 5000}):
        with pytest.raises(FacerecError):
            core.audit.list(**bad)
    with pytest.raises(FacerecError):
        core.audit.purge(older_than_days=-1)
