"""A FAISS index of face encodings under int64 ids (flat or HNSW), with atomic, checksummed saves.

This module knows vectors and integer ids only. What an id stands for, and where the encodings
really live, is the caller's business. A saved index is a cache of the database, so every reason a
save cannot be used is an :class:`IndexLoadError` (see ``index.saved``), and the answer to all of
them is to rebuild.
"""

from __future__ import annotations

import json
import operator
import os
import threading
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import faiss
import numpy as np

from index.kinds import IndexSpec, new_store, store_from_file
from index.pages import advise_huge_pages
from index.saved import (
    FORMAT_VERSION, INDEX_FILE, MANIFEST_FILE, IndexCorrupt, Manifest, check_current, fsync_directory, manifest_spec,
    read_index, read_manifest, temporary_path, write_durably, write_index,
)

DEFAULT_DIM = 128
# Exact distances are recomputed this many queries at a time, which bounds the (m, k, dim) temporary.
_REFINE_QUERIES = 4096


# --- errors -------------------------------------------------------------------------------------


class IndexInputError(ValueError):
    """Ids or vectors handed to the index have the wrong type, shape or values."""


class DuplicateIdError(IndexInputError):
    """An id is already in the index, or appears twice in one call."""


# --- the index ----------------------------------------------------------------------------------


class FaceIndex:
    """Encodings (float32, dim 128 by default) under int64 ids, searched by L2 distance.

    ``spec`` says which kind of index (``index.kinds``): flat by default, exact; hnsw, approximate
    in which neighbours it finds. Either way the distances returned are exact. Ids are non-negative
    (-1 marks "no result" in search output) and unique. Vectors are stored as given: normalising
    them is the encoder's job. All methods are safe to call from several threads; they take turns on
    one lock, because FAISS must not be searched while it is being changed.
    """

    def __init__(self, dim: int = DEFAULT_DIM, spec: IndexSpec | None = None):
        dim = operator.index(dim)
        if dim < 1:
            raise IndexInputError(f"dim must be at least 1, not {dim}")
        self._dim = dim
        self._spec = spec or IndexSpec()
        self._store = new_store(self._spec, dim)
        self._lock = threading.RLock()

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def spec(self) -> IndexSpec:
        return self._spec

    def set_ef_search(self, ef_search: int) -> None:
        """Keep this many candidates in later hnsw searches (a search-time setting: no rebuild)."""
        with self._lock:
            self._spec = replace(self._spec, ef_search=ef_search)  # validated by IndexSpec
            self._store.tune(self._spec)

    @property
    def removed_share(self) -> float:
        """The share of the index's nodes that are removed faces kept as waypoints (hnsw; 0 for
        flat). Above ``index.kinds.COMPACT_SHARE``, rebuild it."""
        with self._lock:
            nodes = len(self._store) + self._store.removed
            return self._store.removed / nodes if nodes else 0.0

    def __len__(self) -> int:
        return len(self._store)

    def __contains__(self, id: object) -> bool:
        try:
            key = operator.index(id)  # type: ignore[arg-type]
        except TypeError:
            return False
        with self._lock:
            return bool(self._store.present(np.array([key], np.int64))[0])

    def __repr__(self) -> str:
        return f"FaceIndex(dim={self._dim}, count={len(self)}, kind={self._spec.describe()})"

    def ids(self) -> np.ndarray:
        """Every id in the index (int64, ascending)."""
        with self._lock:
            return self._store.ids.copy()

    def add(self, ids, vectors) -> None:
        """Add ``vectors`` (n, dim) under ``ids`` (n,); nothing is added if any id is taken."""
        ids = _as_ids(ids)
        vectors = _as_vectors(vectors, self._dim)
        _check_pairs(ids, vectors)
        _check_unique(ids)
        with self._lock:
            taken = ids[self._store.present(ids)]
            if taken.size:
                raise DuplicateIdError(f"{taken.size} id(s) already in the index, e.g. {_sample(taken)}")
            if ids.size:
                self._store.add(ids, vectors)

    def remove(self, ids) -> int:
        """Remove these ids; returns how many were present. Unknown ids are ignored."""
        ids = np.unique(_as_ids(ids, allow_negative=True))
        with self._lock:
            found = ids[self._store.present(ids)]
            if found.size:
                self._store.remove(found)
            return int(found.size)

    def search(self, queries, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest stored vectors to each query, nearest first.

        ``queries`` is (m, dim) or one (dim,) vector (answered as m = 1). Returns distances (m, k)
        float32, true L2 (not squared), and ids (m, k) int64. Places beyond the number of stored
        vectors (or, for an approximate kind, of the neighbours it found) hold distance +inf and id -1.
        """
        k = operator.index(k)
        if k < 1:
            raise IndexInputError(f"k must be at least 1, not {k}")
        queries = _as_vectors(np.atleast_2d(queries) if np.ndim(queries) == 1 else queries, self._dim)
        distances = np.full((len(queries), k), np.inf, np.float32)
        labels = np.full((len(queries), k), -1, np.int64)
        with self._lock:
            found = min(k, len(self))
            if found and len(queries):
                nearest = self._store.candidates(queries, found)
                distances[:, :found], labels[:, :found] = self._exact(queries, nearest)
        return distances, labels

    def memory_regions(self) -> list[tuple[int, int]]:
        """(address, bytes) of the vectors, and of an hnsw graph's links, as they lie in memory now."""
        with self._lock:
            return self._store.regions()

    def use_huge_pages(self, collapse: bool = True) -> int:
        """Ask Linux to back the vectors and graph links with 2 MB pages (``index.pages``), now when
        ``collapse``, else as the kernel gets round to it; returns the bytes advised (0: not done).
        Adds may move them into new memory: advise again after adding."""
        regions = self.memory_regions()
        # Outside the lock: collapsing gigabytes takes seconds, and searches need not wait for it.
        # An add moving the memory meanwhile leaves the advice on freed or reused memory: harmless.
        return advise_huge_pages(regions, collapse)

    def save(self, directory: Path, *, generation: int, model_id: str, epoch: str = "") -> None:
        """Write the index file and then its manifest into ``directory``, each atomically.

        A crash in between leaves the new index file beside the old manifest, whose checksum no
        longer matches: :meth:`load` reports that as corrupt rather than loading the wrong index.
        """
        generation = operator.index(generation)
        if not isinstance(model_id, str) or not model_id:
            raise ValueError("model_id must be a non-empty string")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        temporary: list[Path] = []
        try:
            index_tmp = temporary_path(directory, INDEX_FILE, temporary)
            with self._lock:  # a consistent snapshot; searches wait only for the write, not the fsync
                count = len(self)
                digest = write_index(self._store.raw, index_tmp)
            manifest = Manifest(
                format_version=FORMAT_VERSION, model_id=model_id, dim=self._dim, count=count,
                generation=generation, sha256=digest, epoch=str(epoch),
                created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                faiss_version=faiss.__version__, kind=self._spec.kind, params=self._spec.build_params)
            manifest_tmp = temporary_path(directory, MANIFEST_FILE, temporary)
            write_durably(manifest_tmp, (json.dumps(asdict(manifest), indent=2) + "\n").encode())
            os.replace(index_tmp, directory / INDEX_FILE)
            os.replace(manifest_tmp, directory / MANIFEST_FILE)
            fsync_directory(directory)
        finally:
            for path in temporary:
                path.unlink(missing_ok=True)

    @classmethod
    def load(cls, directory: Path, *, model_id: str, generation: int | None = None,
             epoch: str | None = None, spec: IndexSpec | None = None) -> FaceIndex:
        """The index saved in ``directory``, checked against its manifest and the caller's model.

        With ``spec``, an index of another kind or build parameters is stale (its search-time
        settings, such as ef_search, are simply applied); without it, the saved kind is taken as is.
        Raises :class:`IndexMissing`, :class:`IndexCorrupt` or :class:`IndexStale` (all
        :class:`IndexLoadError`), whose messages say what is wrong.
        """
        directory = Path(directory)
        manifest = read_manifest(directory)
        check_current(directory, manifest, model_id, generation, epoch, spec)
        saved_spec = manifest_spec(directory, manifest, spec)
        raw = read_index(directory, manifest)
        index = cls(manifest.dim, saved_spec)
        index._store = store_from_file(saved_spec, raw, manifest.count,
                                       lambda problem: IndexCorrupt(directory, f"{INDEX_FILE} {problem}"))
        return index

    @classmethod
    def build(cls, ids, vectors, dim: int = DEFAULT_DIM, chunk: int = 100_000,
              progress: Callable[[int], object] | None = None, spec: IndexSpec | None = None) -> FaceIndex:
        """A new index holding ``vectors`` under ``ids``, added ``chunk`` rows at a time.

        ``progress(n)`` is called after each chunk with the number of vectors that chunk added (so
        the calls sum to the total, and ``tqdm(...).update`` can be passed as is). ``vectors`` may
        be any array-like, e.g. a memory map: only one chunk at a time is converted to float32.
        """
        chunk = operator.index(chunk)
        if chunk < 1:
            raise IndexInputError(f"chunk must be at least 1, not {chunk}")
        ids = _as_ids(ids)
        if np.ndim(vectors) != 2 or np.shape(vectors)[1] != dim:
            raise IndexInputError(f"vectors must have shape (n, {dim}), not {np.shape(vectors)}")
        if len(vectors) != len(ids):
            raise IndexInputError(f"{len(ids)} ids for {len(vectors)} vectors")
        _check_unique(ids)
        index = cls(dim, spec)
        for start in range(0, len(ids), chunk):
            stop = min(start + chunk, len(ids))
            index._store.append(ids[start:stop], _as_vectors(vectors[start:stop], dim))
            if progress is not None:
                progress(stop - start)
        index._store.settle(ids)
        return index

    # --- helpers on the held state (call with the lock held) ---

    def _exact(self, queries: np.ndarray, nearest: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """True L2 distances to the ids FAISS found, re-sorted by them.

        FAISS's squared distances come from ||x||^2 + ||y||^2 - 2<x, y> on its BLAS path (large
        query batches), which loses about 1e-3 near zero after the square root. Recomputing the k
        distances directly costs k vector reads per query and gives float32-exact answers, the same
        for every kind of index: a face found by HNSW is as far as flat says.
        """
        distances = np.empty(nearest.shape, np.float32)
        labels = nearest.copy()
        valid = labels >= 0  # an approximate search may find fewer than k; flat fills every place
        for start in range(0, len(queries), _REFINE_QUERIES):
            rows = slice(start, start + _REFINE_QUERIES)
            keys = np.where(valid[rows], labels[rows], self._store.ids[0])
            stored = self._store.vectors(keys.ravel()).reshape(*keys.shape, self._dim)
            exact = np.linalg.norm(stored - queries[rows, None, :], axis=-1)
            distances[rows] = np.where(valid[rows], exact, np.inf)
        order = np.argsort(distances, axis=1, kind="stable")
        return np.take_along_axis(distances, order, 1), np.take_along_axis(labels, order, 1)


# --- input checks -------------------------------------------------------------------------------


def _as_ids(ids, *, allow_negative: bool = False) -> np.ndarray:
    """Ids as a 1-D int64 array; floats, strings and (unless allowed) negative ids are refused."""
    array = np.asarray(ids)
    if array.ndim != 1:
        raise IndexInputError(f"ids must be 1-D, not shape {array.shape}")
    if array.size == 0:
        return np.empty(0, np.int64)
    if array.dtype.kind not in "iu":
        raise IndexInputError(f"ids must be integers, not {array.dtype}")
    if array.dtype.kind == "u" and array.max() > np.iinfo(np.int64).max:
        raise IndexInputError("ids must fit in int64")
    array = array.astype(np.int64, copy=False)
    if not allow_negative and array.min() < 0:
        raise IndexInputError(f"ids must be non-negative (-1 means 'no result'), e.g. {_sample(array[array < 0])}")
    return array


def _as_vectors(vectors, dim: int) -> np.ndarray:
    """Vectors as a C-contiguous (n, dim) float32 array of finite numbers."""
    try:
        array = np.ascontiguousarray(vectors, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise IndexInputError(f"vectors must be numbers ({exc})") from exc
    if array.ndim != 2 or array.shape[1] != dim:
        raise IndexInputError(f"vectors must have shape (n, {dim}), not {array.shape}")
    if not np.isfinite(array).all():  # a NaN would sort arbitrarily and poison every search result
        raise IndexInputError("vectors must be finite (found NaN or infinity)")
    return array


def _check_pairs(ids: np.ndarray, vectors: np.ndarray) -> None:
    if len(ids) != len(vectors):
        raise IndexInputError(f"{len(ids)} ids for {len(vectors)} vectors")


def _check_unique(ids: np.ndarray) -> None:
    values, counts = np.unique(ids, return_counts=True)
    if values.size != ids.size:
        raise DuplicateIdError(f"ids repeated within the call, e.g. {_sample(values[counts > 1])}")


def _sample(ids: np.ndarray, limit: int = 5) -> str:
    shown = ", ".join(str(int(i)) for i in ids[:limit])
    return f"[{shown}{', ...' if ids.size > limit else ''}]"
