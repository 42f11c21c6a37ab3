"""`facerec` with its stages made visible, for the crash tests: ``python tests/crash_probe.py ARGS`` runs
``facerec ARGS``, the service's own code, with a few of its functions wrapped (fault injection only).

With ``CRASH_PROBE_LOG`` set, each process appends ``<pid> <event>`` lines to that file as it enters
(``+stage``) and leaves (``-stage``) the stages below, so a test that SIGKILLs it can tell where the
kill landed (:func:`landed`). With ``CRASH_PROBE_HOLD=<stage>:<n>``, the n-th time a process reaches
that stage it logs ``hold <stage>`` and waits there for the test's SIGKILL: a kill at a moment random
timing would rarely hit (inside the write transaction, between writing and renaming an index file).
Only the first process to get there holds: it creates the marker file ``CRASH_PROBE_HELD`` names.

Nothing here imports TensorFlow: under ``serve`` the master forks its workers after this has run.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from pathlib import Path

# Where a kill landed, by the last event its process logged.
LANDED = {
    None: "startup (imports, model load, roster open)",
    "+migrate": "migrating a new database",
    "+locate": "decoding, detecting, encoding photos",
    "-locate": "storing: crops to PNG, index load",
    "+store": "storing: crops to PNG, index load",
    "+transaction": "in the write transaction",
    "+follow": "committed, index following",
    "-follow": "committed, outcome not yet reported",
    "-store": "stored and reported; between batches or requests",
    "+stale": "reading crops to re-encode",
    "-stale": "re-encoding crops",
    "+rebuild": "rebuilding the index",
    "+save": "saving the index",
    "-save": "after saving the index",
    "-rebuild": "after rebuilding the index",
}


def landed(log: Path, pid: int) -> str:
    """Where process ``pid`` was when it was killed, as its last logged event says."""
    last = None
    if log.exists():
        for line in log.read_text().splitlines():
            who, _, event = line.partition(" ")
            if who == str(pid):
                last = event
    if last and last.startswith("hold "):
        return f"held: {last[5:]}"
    return LANDED.get(last, f"after {last}")


class Probe:
    def __init__(self, log: str, hold: str, held: str):
        self.held = held or f"{log}.held"
        self.fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) if log else None
        stage, _, count = hold.partition(":")
        self.hold_stage, self.hold_at = stage, int(count or 1)
        self.seen: dict[tuple[int, str], int] = {}

    def event(self, text: str) -> None:
        if self.fd is not None:
            os.write(self.fd, f"{os.getpid()} {text}\n".encode())  # one O_APPEND write: lines never mix

    def reached(self, stage: str) -> None:
        """Count this process's arrivals at ``stage``; wait for the kill at the chosen one."""
        key = (os.getpid(), stage)  # per process: a forked worker counts from zero
        self.seen[key] = self.seen.get(key, 0) + 1
        if stage == self.hold_stage and self.seen[key] == self.hold_at and self._first_hold():
            self.event(f"hold {stage}")
            while True:
                time.sleep(60)

    def _first_hold(self) -> bool:
        """Only one process holds per marker file: a worker gunicorn starts in place of a killed one
        inherits the same setting, and must not be held (and killed) in turn."""
        try:
            os.close(os.open(self.held, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        except FileExistsError:
            return False
        return True

    def wrap(self, owner, name: str, stage: str, hold: str | None = "before", leave: bool = True) -> None:
        """Log entering (and, with ``leave``, leaving) ``owner.name``; may hold ``before`` it runs or
        ``after`` it returned."""
        original = getattr(owner, name)

        @functools.wraps(original)
        def wrapped(*args, **kwargs):
            self.event(f"+{stage}")
            if hold == "before":
                self.reached(stage)
            result = original(*args, **kwargs)
            if hold == "after":
                self.reached(stage)
            if leave:
                self.event(f"-{stage}")
            return result

        setattr(owner, name, wrapped)


def install(probe: Probe) -> None:
    from alembic.operations import Operations

    import index.faces
    import service.app.enrollment as enrollment
    import service.roster.roster as roster
    from service.roster.face_index import RosterIndex

    probe.wrap(Operations, "create_table", "migrate", hold="after", leave=False)
    probe.wrap(enrollment, "single_faces", "locate")
    probe.wrap(roster.Roster, "_commit_faces", "store")
    probe.wrap(roster.Roster, "store_encodings", "store")
    # The generation bump is the write transaction's last statement: held after it, nothing is committed.
    probe.wrap(roster, "bump_generation", "transaction", hold="after", leave=False)
    probe.wrap(roster.Roster, "_follow", "follow")
    probe.wrap(roster.Roster, "stale_faces", "stale")
    probe.wrap(RosterIndex, "rebuild", "rebuild")
    probe.wrap(index.faces.FaceIndex, "save", "save", hold=None)
    # Held once the index file's temporary is written, before it is renamed into place.
    probe.wrap(index.faces, "write_index", "save", hold="after", leave=False)


def main() -> int:
    probe = Probe(os.environ.get("CRASH_PROBE_LOG", ""), os.environ.get("CRASH_PROBE_HOLD", ""),
                  os.environ.get("CRASH_PROBE_HELD", ""))
    install(probe)
    from service.cli import main as facerec

    return facerec(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
