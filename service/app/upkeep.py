"""Keeping the roster searchable: rebuild the index, re-encode after a model change, readiness."""

from __future__ import annotations

import time
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Callable, ContextManager

from service.app.upkeep_results import BackupReport, ReindexReport, RosterStatus
from service.roster.crops import crop_from_png

if TYPE_CHECKING:
    from service.app.core import Facerec

# progress(description, total or None) -> a context whose value is called with each step's count.
Progress = Callable[[str, "int | None"], ContextManager[Callable[[int], object]]]


def no_progress(description: str, total: int | None) -> ContextManager[Callable[[int], object]]:
    return nullcontext(lambda steps: None)


class UpkeepService:
    def __init__(self, core: Facerec):
        self.core = core

    def reindex(self, reembed: bool = False, batch_size: int = 64, progress: Progress = no_progress) -> ReindexReport:
        """Rebuild this host's search index from the database, of the kind the configuration names
        (``index.kind``): this is how a host switches kinds.

        ``reembed`` first re-encodes, from its kept crop, every face made by another model. Each batch
        commits on its own, so an interrupted run keeps what it did and the next one does the rest.
        """
        started = time.monotonic()
        roster = self.core.roster
        reembedded, missing = 0, []
        if reembed:
            stale = roster.count_stale_faces()
            if stale:
                with progress("re-encode", stale) as step:
                    reembedded, missing = self._reembed(max(1, batch_size), step)
        build_started = time.monotonic()
        with progress("reindex", None) as read, progress(f"build {roster.index.kind}", None) as build:
            vectors, generation = roster.rebuild_index(progress=read, build_progress=build)
        return ReindexReport(vectors, generation, time.monotonic() - started, time.monotonic() - build_started,
                             reembedded, tuple(missing), roster.index.kind)

    def _reembed(self, batch_size: int, step: Callable[[int], object]) -> tuple[int, list[int]]:
        roster, encoder = self.core.roster, self.core.pipeline.encoder
        done, missing, after = 0, [], 0
        while rows := roster.stale_faces(after, batch_size):
            after = rows[-1][0]
            crops = [(face_id, crop_from_png(png)) for face_id, png in rows]
            usable = [(face_id, crop) for face_id, crop in crops if crop is not None]
            missing += [face_id for face_id, crop in crops if crop is None]
            if usable:
                roster.store_encodings([face_id for face_id, _ in usable], encoder.encode([c for _, c in usable]))
            done += len(usable)
            step(len(rows))
        return done, missing

    def status(self) -> RosterStatus:
        """Whether this process's index holds exactly the database's faces (after catching up)."""
        if not self.core.model_loaded:
            return RosterStatus(False, 0, 0, -1, -1)
        roster = self.core.roster
        index = roster.index
        index.load()
        for _ in range(3):  # a write landing between the catch-up and the count is not a fault: look again
            index.sync()
            faces, generation = roster.state()
            if generation == index.generation:
                break
        return RosterStatus(True, faces, len(index), generation, index.generation)

    def prepare_index(self) -> tuple[int, int]:
        """Load the saved index and catch up with the database (or rebuild it), and save it: (faces,
        generation). Needs no model: the configured model id names the encodings."""
        index = self.core.roster.index
        index.load()
        index.sync()
        index.save()
        return len(index), index.generation

    def backup(self, target: Path, progress: Progress = no_progress) -> BackupReport:
        """A consistent copy of the whole roster (people, faces, crops, audit) in a new file, taken while
        the service runs, from SQLite or PostgreSQL alike."""
        from service.roster.backup import write_backup

        started = time.monotonic()
        with progress("backup", None) as step:
            contents = write_backup(self.core.roster.engine, Path(target), step)
        return _report(target, False, contents, started)

    def restore(self, source: Path, replace: bool = False, progress: Progress = no_progress) -> BackupReport:
        """Make the roster what a backup holds (``replace``: even when it holds something now), then
        rebuild this host's index; other processes rebuild theirs when they next look."""
        from service.roster.backup import read_contents, restore_backup

        started = time.monotonic()
        contents = read_contents(Path(source))
        with progress("restore", contents.people + contents.faces + contents.crops + contents.audit_events) as step:
            restore_backup(self.core.roster.engine, Path(source), replace, step)
        self.core.roster.index.load()
        self.core.roster.index.sync()
        self.core.roster.index.save()
        return _report(source, True, contents, started)

    def import_crops(self, home: Path | None = None) -> tuple[int, int]:
        """Copy the crop files an earlier version kept under ``home`` (default: this data home) into the
        database, for the faces that have none there yet; (copied, not found under that home)."""
        return self.core.roster.import_crop_files(Path(home) if home else self.core.config.home)

    def upgrade_database(self) -> None:
        """Apply the schema migrations (opening the roster does it)."""
        self.core.roster


def _report(file: Path, restored: bool, contents, started: float) -> BackupReport:
    return BackupReport(str(file), restored, contents.people, contents.faces, contents.crops, contents.audit_events,
                        time.monotonic() - started)
