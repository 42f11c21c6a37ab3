"""The FAISS index of one model's faces, kept in step with the database.

The database commits first and bumps the roster generation in the same transaction; the index
follows. A saved index records the generation it reflects. Loading one whose generation is behind
(a process died between commit and save, or a command changed the roster without loading the index)
catches up by difference: the faces it lacks are read and added, the ones gone are removed. A
missing, corrupt or other-model index is rebuilt from the database, and so is one of another kind
than this process is configured for (``index.kind``): the saved index is this host's cache, built to
this host's configuration.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import closing
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from sqlalchemy import Connection, Engine, func, select

from service.config import IndexConfig
from service.roster.codec import encodings_from_bytes
from service.roster.database import FaceRow, current_state

log = logging.getLogger(__name__)

Progress = Callable[[int], object]
SAVE_EVERY_SECONDS = 60.0
STALE_TEMPORARY_SECONDS = 3600


class RosterIndex:
    """Search over the faces of one model, loaded on first use; thread-safe.

    ``persist=False`` keeps it in memory only (server workers, which catch up from the database
    instead of racing each other to save the same file).
    """

    def __init__(self, engine: Engine, model_id: str, directory: Path, persist: bool = True,
                 settings: IndexConfig = IndexConfig()):
        # SQLAlchemy Core throughout: rows as tuples, streamed. Through ORM sessions, reading 1M
        # encodings took 6.0 s on SQLite and 8.6 s on PostgreSQL; this way 2.3 s and 5.3 s.
        self.engine = engine
        self.model_id = model_id
        self.directory = Path(directory)
        self.persist = persist
        self.settings = settings
        self._index = None
        self.generation = -1
        self.epoch = ""  # the roster epoch the index's ids belong to (a restore starts a new one)
        self._saved_generation = -1
        self._last_save = time.monotonic()
        # Serialises catch-ups, rebuilds and this process's own writes: all change the index.
        self.lock = threading.RLock()

    @property
    def loaded(self) -> bool:
        return self._index is not None

    @property
    def kind(self) -> str:
        return self.settings.kind

    def spec(self):
        """The configured kind as ``index.IndexSpec`` (FAISS is imported only once an index is needed)."""
        from index import IndexSpec

        hnsw = self.settings.hnsw
        return IndexSpec(kind=self.settings.kind, m=hnsw.m, ef_construction=hnsw.ef_construction,
                         ef_search=hnsw.ef_search)

    @property
    def face_index(self):
        """The FaceIndex, loaded (or rebuilt) on first use."""
        self.load()
        return self._index

    def load(self) -> None:
        """Load the saved index and catch up with the database, or rebuild it; once."""
        if self._index is None:
            with self.lock:
                if self._index is None:
                    self._load()

    def __len__(self) -> int:
        return len(self.face_index)

    def search(self, encoding: np.ndarray, k: int) -> list[tuple[float, int]]:
        """The ``k`` nearest faces as (distance, face id), nearest first, after catching up."""
        self.sync()
        distances, ids = self.face_index.search(np.asarray(encoding, np.float32), k)
        return [(float(d), int(i)) for d, i in zip(distances[0], ids[0]) if i >= 0]

    # ---- loading ---------------------------------------------------------------------------------

    def _clear_the_way(self) -> None:
        """The index folder is this roster's own: something else in its place (a file) is moved
        aside, and temporaries interrupted saves left behind are removed (see remove_leftovers)."""
        if self.directory.exists() and not self.directory.is_dir():
            aside = self.directory.with_name(f"{self.directory.name}.not-a-folder-{int(time.time())}")
            self.directory.rename(aside)
            log.warning("%s was not a folder: moved it to %s and rebuilt the index there", self.directory, aside)
        else:
            remove_leftovers(self.directory)

    def _load(self) -> None:
        from index import COMPACT_SHARE, FaceIndex, IndexLoadError, IndexMissing, read_manifest

        if self.persist:
            self._clear_the_way()
        try:
            # The generation read first is checked again by the load: a save landing in between is
            # refused as stale (and rebuilt), never paired with the other save's contents.
            saved = read_manifest(self.directory)
            _, epoch = self.database_state()
            self._index = FaceIndex.load(self.directory, model_id=self.model_id, generation=saved.generation,
                                         epoch=epoch, spec=self.spec())
            self.generation = self._saved_generation = saved.generation
            self.epoch = epoch
        except IndexMissing as exc:  # a new data home, or the index was deleted on purpose
            log.info("no index yet (%s); building it from the database", exc)
            self.rebuild()
            return
        except IndexLoadError as exc:
            log.warning("index at %s not usable (%s); rebuilding it from the database", self.directory, exc)
            self.rebuild()
            return
        self._use_huge_pages(collapse=True)
        self.sync()
        # Removed faces stay in an HNSW graph as waypoints (index.kinds.HnswStore). A process that
        # saves (a command, or the server before it forks its workers) rebuilds once they pass the
        # share; a worker keeps serving as it is rather than stall its searches for a build.
        if self.persist and self._index.removed_share > COMPACT_SHARE:
            log.info("%.0f%% of the index's nodes are removed faces: rebuilding it", 100 * self._index.removed_share)
            self.rebuild()
        else:  # said on every load, not only after a rebuild: a model switch leaves the saved index usable
            self._warn_about_other_models()

    def rebuild(self, progress: Progress | None = None, chunk: int = 50_000,
                build_progress: Progress | None = None) -> int:
        """A new index of every face of this model, of the configured kind; returns the generation it
        reflects. ``progress`` counts the faces read, ``build_progress`` those added to the index.

        The generation is read before the faces: a write landing in between leaves the index's
        generation older than the database's, so the next check catches up rather than trusting it.
        """
        from index import FaceIndex

        with self.lock:
            with self.engine.begin() as connection:
                generation, epoch = current_state(connection)
                total = connection.scalar(select(func.count(FaceRow.id)).where(FaceRow.model_id == self.model_id)) or 0
                ids, vectors = self._read_all(connection, total, chunk, progress)
            self._index = FaceIndex.build(ids, vectors, progress=build_progress, spec=self.spec())
            self._use_huge_pages(collapse=True)
            self.generation, self.epoch = generation, epoch
            self._saved_generation = -1  # a rebuild is always written, even at an unchanged generation
            self.save()
        self._warn_about_other_models()
        return generation

    def _read_all(self, connection: Connection, total: int, chunk: int, progress: Progress | None):
        ids = np.empty(total, np.int64)
        vectors = np.empty((total, 128), np.float32)
        filled = 0
        # closing(): on an error, the server-side cursor is closed before the connection goes back
        with closing(self._encoding_rows(connection, chunk)) as chunks:
            for rows in chunks:
                end = min(filled + len(rows), total)  # a face added since the count waits for the next catch-up
                rows = rows[:end - filled]
                ids[filled:end] = [face_id for face_id, _ in rows]
                vectors[filled:end] = encodings_from_bytes(blob for _, blob in rows)
                filled = end
                if progress:
                    progress(len(rows))
        return ids[:filled], vectors[:filled]

    def _encoding_rows(self, connection: Connection, chunk: int) -> Iterator[list]:
        """Every (face id, encoding bytes) of this model in id order, ``chunk`` rows at a time, streamed."""
        if connection.dialect.name == "postgresql":
            # psycopg's binary protocol hands bytea over as it is stored; the text protocol SQLAlchemy
            # uses spells each 512-byte encoding in hex and parses it back (1M faces: 3.4 s, not 5.3 s).
            with connection.connection.dbapi_connection.cursor(name="facerec_index_rebuild", binary=True) as cursor:
                cursor.execute("SELECT id, encoding FROM faces WHERE model_id = %s ORDER BY id", (self.model_id,))
                while rows := cursor.fetchmany(chunk):
                    yield rows
            return
        query = select(FaceRow.id, FaceRow.encoding).where(FaceRow.model_id == self.model_id).order_by(FaceRow.id)
        yield from connection.execution_options(stream_results=True, yield_per=chunk).execute(query).partitions(chunk)

    def _warn_about_other_models(self) -> None:
        with self.engine.connect() as connection:
            others = connection.scalar(select(func.count(FaceRow.id)).where(FaceRow.model_id != self.model_id)) or 0
        if others:
            log.warning("%d faces were encoded by another model and are not searchable; "
                        "run `facerec reindex --reembed`", others)

    # ---- following the database ------------------------------------------------------------------

    def database_state(self) -> tuple[int, str]:
        """The database's (generation, epoch)."""
        with self.engine.connect() as connection:
            return current_state(connection)

    def sync(self) -> bool:
        """Catch up with writes made elsewhere; True if the index changed.

        Cheap when nothing moved (one SELECT of the generation). Does nothing before the first load:
        loading reads the database's current state anyway.
        """
        if self._index is None or self.database_state() == (self.generation, self.epoch):
            return False
        with self.lock:
            self._catch_up()
        return True

    def _catch_up(self) -> None:
        # The generation is read before the ids (as in rebuild): a write landing in between leaves
        # self.generation behind, so the next sync looks again.
        with self.engine.begin() as connection:
            generation, epoch = current_state(connection)
            if generation == self.generation and epoch == self.epoch:
                return
            restored = epoch != self.epoch
            if not restored:
                in_db = np.fromiter(connection.scalars(select(FaceRow.id).where(FaceRow.model_id == self.model_id)),
                                    np.int64)
                held = self._index.ids()
                missing, vectors = self._encodings_by_id(connection, np.setdiff1d(in_db, held))
        if restored:  # the ids may now mean other faces: nothing held can be trusted
            log.warning("the roster was restored (epoch %s, was %s): rebuilding the index", epoch, self.epoch or "-")
            self.rebuild()
            return
        extra = np.setdiff1d(held, in_db)
        if extra.size:
            self._index.remove(extra)
        if missing.size:
            self._index.add(missing, vectors)
            self._use_huge_pages(collapse=False)
        self.generation = generation
        self.save_if_due()

    def _encodings_by_id(self, connection: Connection, face_ids: np.ndarray, chunk: int = 500):
        """The ids of ``face_ids`` still in the database, and their encodings, ``chunk`` ids per query.

        A face deleted since its id was read is simply not returned (SQLite reads are not one snapshot).
        """
        found_ids, blobs = [], []
        for start in range(0, len(face_ids), chunk):
            part = [int(i) for i in face_ids[start:start + chunk]]
            query = select(FaceRow.id, FaceRow.encoding).where(FaceRow.id.in_(part), FaceRow.model_id == self.model_id)
            for face_id, blob in connection.execute(query):
                found_ids.append(face_id)
                blobs.append(blob)
        return np.array(found_ids, np.int64), encodings_from_bytes(blobs)

    def follow(self, generation: int, add: tuple[np.ndarray, np.ndarray] | None = None,
               remove: list[int] | None = None) -> None:
        """Apply this process's committed change (call with ``lock`` held, after a sync).

        When the generation moved by more than this change, someone else wrote in between: catch up
        by difference instead of guessing. Before the first load there is nothing to follow.
        """
        if self._index is None:
            return
        if generation != self.generation + 1:
            self._catch_up()
            return
        if remove:
            self._index.remove(np.asarray(remove, np.int64))
        if add is not None and len(add[0]):
            self._index.add(*add)
            self._use_huge_pages(collapse=False)
        self.generation = generation
        self.save_if_due()

    def _use_huge_pages(self, collapse: bool) -> None:
        # Only where the index serves searches (server workers): a process that persists it (a
        # command, the server before it forks) loads it to change and save it, and would pay the
        # move (about 2 s per GB) for nothing. At load and rebuild, converted at once; after an add,
        # which may have moved the vectors into new memory, only marked, for the kernel to convert.
        if self.settings.huge_pages and not self.persist:
            try:
                self._index.use_huge_pages(collapse=collapse)
            except Exception:  # advice: an index on 4 KB pages serves as well, only slower
                log.exception("could not move the index onto huge pages; it stays on 4 KB pages")

    # ---- saving ----------------------------------------------------------------------------------

    def save_if_due(self, every: float = SAVE_EVERY_SECONDS) -> None:
        if time.monotonic() - self._last_save >= every:
            self.save()

    def save(self) -> None:
        """Write the index with its generation (nothing to do in memory-only mode or when unchanged)."""
        if not self.persist or self._index is None or self.generation == self._saved_generation:
            return
        with self.lock:
            self._clear_the_way()
            self._index.save(self.directory, generation=self.generation, model_id=self.model_id, epoch=self.epoch)
            self._saved_generation = self.generation
            self._last_save = time.monotonic()


def remove_leftovers(directory: Path) -> int:
    """Remove the temporaries that saves killed midway left in the index folder; how many.

    Every process that opens the roster calls this, and every save: a temporary is removed only once
    its writer is known to be dead (or it is an hour old), never while another process sharing the
    data home is still writing it (``index.saved.remove_abandoned_temporaries`` says how it tells).
    Costs one listing when there is nothing to remove, and imports FAISS only when there is.
    """
    directory = Path(directory)
    # The pattern is index.saved.TEMPORARY_PATTERN, spelt out: importing it would load FAISS.
    if not directory.is_dir() or not any(directory.glob(".*.tmp")):
        return 0
    from index.saved import remove_abandoned_temporaries

    removed = remove_abandoned_temporaries(directory, STALE_TEMPORARY_SECONDS)
    if removed:
        log.warning("removed %d temporary file(s) that interrupted index saves left in %s", len(removed), directory)
    return len(removed)
