"""Where decisions are recorded: the database (append-only, read by time and person, purged past the
retention) and a JSON-lines file under the data home, for log shippers."""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine, delete, func, insert, select

from service.roster.database import AuditRow


class AuditFile:
    """One JSON line per decision, each a single ``O_APPEND`` write: lines from several processes
    never interleave."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()

    def append(self, fields: dict) -> None:
        line = (json.dumps(fields) + "\n").encode()
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)


class AuditStore:
    """The ``audit_events`` table."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def append(self, fields: dict) -> int:
        with self.engine.begin() as connection:
            return connection.execute(insert(AuditRow).values(**fields).returning(AuditRow.id)).scalar_one()

    def read(self, since: datetime | None, until: datetime | None, person: str | None, offset: int,
             limit: int) -> tuple[list, int]:
        """Events in [since, until) and of ``person`` when given, newest first; and how many match."""
        conditions = []
        if since is not None:
            conditions.append(AuditRow.time >= since)
        if until is not None:
            conditions.append(AuditRow.time < until)
        if person is not None:
            conditions.append(AuditRow.person == person)
        with self.engine.connect() as connection:
            rows = connection.execute(select(AuditRow).where(*conditions)
                                      .order_by(AuditRow.time.desc(), AuditRow.id.desc())
                                      .offset(offset).limit(limit)).all()
            total = connection.execute(select(func.count(AuditRow.id)).where(*conditions)).scalar_one()
        return rows, total

    def of_person(self, person: str) -> list:
        """Every event that names ``person``, oldest first."""
        with self.engine.connect() as connection:
            return connection.execute(select(AuditRow).where(AuditRow.person == person)
                                      .order_by(AuditRow.time, AuditRow.id)).all()

    def erase_person(self, person: str) -> int:
        """Delete every event that names ``person``; how many went."""
        with self.engine.begin() as connection:
            return connection.execute(delete(AuditRow).where(AuditRow.person == person)).rowcount

    def purge(self, before: datetime) -> int:
        """Delete the events older than ``before``; how many went."""
        with self.engine.begin() as connection:
            return connection.execute(delete(AuditRow).where(AuditRow.time < before)).rowcount
