"""The audit of decisions: every verify and identify, recorded in the database (every replica's, read
by time and person) and in the local JSON-lines log; purged past the retention."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy.exc import SQLAlchemyError

from service.app import inputs
from service.app.results import AuditEvent, AuditPage, AuditPurge, distance_json
from service.errors import FacerecError

if TYPE_CHECKING:
    from service.app.core import Facerec

log = logging.getLogger(__name__)


class AuditService:
    def __init__(self, core: Facerec):
        self.core = core
        self._file = None

    def record(self, endpoint: str, outcome: str, person: str | None = None, distance: float | None = None,
               code: str | None = None, key_id: str | None = None, request_id: str | None = None) -> None:
        """Append one decision to the local log (it never depends on the database) and to the database.
        Either failing is logged and the decision stands: it was made, and the other record holds it."""
        from service.roster.audit import AuditFile
        from service.roster.database import utcnow

        now = utcnow()
        fields = {"endpoint": endpoint, "request_id": request_id, "key_id": key_id, "outcome": outcome,
                  "person": None if person is None else person[:inputs.MAX_PERSON_ID],
                  "distance": distance_json(distance), "code": code}
        if self._file is None:
            self._file = AuditFile(self.core.config.audit_log)
        try:
            self._file.append({"time": now.isoformat(timespec="milliseconds"), **fields})
        except OSError:
            log.exception("decision not written to %s (it goes to the database)", self.core.config.audit_log)
        try:
            self.core.roster.audit.append({"time": now, **fields})
        except SQLAlchemyError:
            log.exception("decision not recorded in the database (it is in %s)", self.core.config.audit_log)

    def list(self, since: datetime | None = None, until: datetime | None = None, person: str | None = None,
             offset: int = 0, limit: int = 100) -> AuditPage:
        """Decisions in [since, until), of ``person`` when given, newest first, a page at a time."""
        person = None if person is None else inputs.person_id(person)
        rows, total = self.core.roster.audit.read(since, until, person, offset, inputs.page_size(limit))
        return AuditPage(tuple(AuditEvent.from_row(row) for row in rows), total, offset, limit)

    def purge(self, older_than_days: int | None = None) -> AuditPurge:
        """Delete the database's decisions older than ``older_than_days`` (default: the retention)."""
        from service.roster.database import utcnow

        days = self.core.config.audit.retention_days if older_than_days is None else older_than_days
        if days < 0:
            raise FacerecError("a retention is zero days or more")
        before = utcnow() - timedelta(days=days)
        return AuditPurge(self.core.roster.audit.purge(before), before)
