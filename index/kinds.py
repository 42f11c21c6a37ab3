"""The kinds of FAISS index a FaceIndex can hold, and how each stores, finds and forgets vectors.

``flat`` scans every vector: exact, and the default. ``hnsw`` walks a graph of near neighbours
(FAISS's IndexHNSWFlat): approximate in which faces it finds, exact in the distances it reports,
and many times faster than a scan on large rosters (docs/performance.md, "Approximate search").

Why HNSW, which cannot delete, rather than IVF-Flat, which can: face encodings fill many of their
128 dimensions, and there the coarse cells of an inverted file cut people apart. On clustered
synthetic faces (tests/clustered_faces.py, 100,000 faces, one-off measurement) an IVF of 1,024 lists
scanning 128 of them (an eighth of the roster) found flat's nearest person for 99.75% of probes in
0.44 ms; the graph, in the same time, for 99.95%. Deletion is handled by tombstones (HnswStore).

Both answer with ids and raw vectors only; FaceIndex does the input checks, locking, exact distances
and saving around them.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import faiss
import numpy as np

KINDS = ("flat", "hnsw")
# Removed faces stay in an HNSW graph as waypoints, costing memory and search time. Rebuilding costs
# a whole build (minutes at a million faces), so not at every deletion: past this share of the nodes
# a caller should (FaceIndex.removed_share; the roster does when it next loads and saves the index).
COMPACT_SHARE = 0.1
_ID_MAX = int(np.iinfo(np.int64).max)


class IndexSpecError(ValueError):
    """An index kind or parameter that cannot be built."""


@dataclass(frozen=True)
class IndexSpec:
    """Which kind of index to build, with its parameters.

    ``m`` (links per face) and ``ef_construction`` (candidates weighed per link) shape the HNSW
    graph: a saved index built with others is rebuilt. ``ef_search`` (candidates kept while
    searching, raised to k when smaller) only steers searches, so changing it needs no rebuild.
    """

    kind: str = "flat"
    m: int = 48
    ef_construction: int = 80
    ef_search: int = 512

    def __post_init__(self):
        if self.kind not in KINDS:
            raise IndexSpecError(f"index kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        for name, low in (("m", 2), ("ef_construction", 1), ("ef_search", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise IndexSpecError(f"hnsw {name} must be a whole number of at least {low}, not {value!r}")

    @property
    def build_params(self) -> dict:
        """What the saved file depends on: recorded in its manifest, and compared when it is loaded."""
        return {"m": int(self.m), "ef_construction": int(self.ef_construction)} if self.kind == "hnsw" else {}

    def describe(self) -> str:
        params = ", ".join(f"{k}={v}" for k, v in self.build_params.items())
        return f"{self.kind} ({params})" if params else self.kind


def new_store(spec: IndexSpec, dim: int):
    return HnswStore.empty(spec, dim) if spec.kind == "hnsw" else FlatStore.empty(dim)


def store_from_file(spec: IndexSpec, raw: faiss.Index, count: int, problem):
    """The store of a loaded FAISS file of ``spec``'s kind; ``problem(message)`` makes the error to
    raise when the file does not hold what its manifest says (``count`` live faces)."""
    cls = HnswStore if spec.kind == "hnsw" else FlatStore
    return cls.from_file(spec, raw, count, problem)


class _Store:
    """Membership and the FAISS index; ``_ids`` is a sorted copy of the live ids (FAISS keeps its id
    map out of Python's reach and would accept duplicates): 8 bytes per id, lookups by binary search."""

    def __init__(self, raw: faiss.Index, ids: np.ndarray):
        self.raw = raw
        self._ids = ids

    def __len__(self) -> int:
        return int(self._ids.size)

    @property
    def ids(self) -> np.ndarray:
        return self._ids

    @property
    def removed(self) -> int:
        return 0

    def present(self, ids: np.ndarray) -> np.ndarray:
        """Boolean mask: which of ``ids`` are live."""
        if not self._ids.size:
            return np.zeros(ids.shape, bool)
        where = np.minimum(np.searchsorted(self._ids, ids), self._ids.size - 1)
        return self._ids[where] == ids

    def append(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add without bookkeeping, for a build: :meth:`settle` with every id appended, in order, after."""
        self.raw.add_with_ids(vectors, ids)

    def settle(self, ids: np.ndarray) -> None:
        self._ids = np.sort(ids)

    def tune(self, spec: IndexSpec) -> None:
        """Take up ``spec``'s search-time settings (flat has none)."""

    def regions(self) -> list[tuple[int, int]]:
        """(address, bytes) of the memory searches read at random: the vectors, and graph links."""
        return [_region(faiss.downcast_index(self.raw.index).codes)]

    def _insert_ids(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Insert ``ids`` into the sorted copy; where each landed (for arrays kept parallel to it)."""
        order = np.argsort(ids, kind="stable")
        at = np.searchsorted(self._ids, ids[order])
        self._ids = np.insert(self._ids, at, ids[order])
        return order, at


class FlatStore(_Store):
    """IndexIDMap2 over IndexFlatL2: every search compares the query with every vector."""

    @classmethod
    def empty(cls, dim: int) -> FlatStore:
        return cls(faiss.IndexIDMap2(faiss.IndexFlatL2(dim)), np.empty(0, np.int64))

    @classmethod
    def from_file(cls, spec, raw, count, problem) -> FlatStore:
        if not isinstance(raw, faiss.IndexIDMap2):
            raise problem(f"holds a {type(raw).__name__}, not an IndexIDMap2")
        inner = faiss.downcast_index(raw.index)
        if not isinstance(inner, faiss.IndexFlat) or inner.metric_type != faiss.METRIC_L2:
            raise problem(f"wraps a {type(inner).__name__}, not a flat L2 index")
        if raw.ntotal != count:
            raise problem(f"holds {raw.ntotal} vectors, the manifest says {count}")
        return cls(raw, _unique_ids(faiss.vector_to_array(raw.id_map), raw.ntotal, problem))

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self.raw.add_with_ids(vectors, ids)
        self._insert_ids(ids)

    def remove(self, ids: np.ndarray) -> None:
        removed = self.raw.remove_ids(ids)
        if removed != ids.size:  # the id copy and FAISS disagree: a bug, not bad input
            raise RuntimeError(f"FAISS removed {removed} of {ids.size} ids it should hold")
        self._ids = np.delete(self._ids, np.searchsorted(self._ids, ids))

    def candidates(self, queries: np.ndarray, k: int) -> np.ndarray:
        return self.raw.search(queries, k)[1]

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        return self.raw.reconstruct_batch(ids)


class HnswStore(_Store):
    """IndexIDMap over IndexHNSWFlat, with removal by tombstone.

    An HNSW graph cannot drop a node: its neighbours route searches through it. A removed face
    keeps its node as a waypoint, relabelled -1 in the id map (which the saved file carries, so a
    reload knows), and searches admit only labels >= 0. Its vector is overwritten at once with a
    copy of a live neighbour's, so the removed encoding leaves memory and the next save (deleting a
    person must delete their encodings) while the node still routes towards the same region.
    Dead nodes cost memory and search time until a rebuild (COMPACT_SHARE).
    """

    def __init__(self, raw: faiss.IndexIDMap, ids: np.ndarray, positions: np.ndarray, spec: IndexSpec):
        super().__init__(raw, ids)
        self._positions = positions  # each live id's node in the graph, parallel to _ids
        self._spec = spec
        self._hnsw = faiss.downcast_index(raw.index)
        self._removed = int(raw.ntotal) - int(ids.size)
        self._live = faiss.IDSelectorRange(0, _ID_MAX)  # kept here: search parameters hold a raw pointer

    @classmethod
    def empty(cls, spec: IndexSpec, dim: int) -> HnswStore:
        graph = faiss.IndexHNSWFlat(dim, int(spec.m))
        graph.hnsw.efConstruction = int(spec.ef_construction)
        return cls(faiss.IndexIDMap(graph), np.empty(0, np.int64), np.empty(0, np.int64), spec)

    @classmethod
    def from_file(cls, spec, raw, count, problem) -> HnswStore:
        if type(raw) is not faiss.IndexIDMap:
            raise problem(f"holds a {type(raw).__name__}, not an IndexIDMap")
        inner = faiss.downcast_index(raw.index)
        if not isinstance(inner, faiss.IndexHNSWFlat) or inner.metric_type != faiss.METRIC_L2:
            raise problem(f"wraps a {type(inner).__name__}, not an HNSW flat L2 index")
        if inner.hnsw.nb_neighbors(1) != spec.m:
            raise problem(f"has {inner.hnsw.nb_neighbors(1)} links per node, the manifest says m={spec.m}")
        labels = faiss.vector_to_array(raw.id_map)
        positions = np.flatnonzero(labels >= 0)
        if positions.size != count:
            raise problem(f"holds {positions.size} live vectors, the manifest says {count}")
        ids = _unique_ids(labels[positions], positions.size, problem)
        order = np.argsort(labels[positions], kind="stable")
        inner.hnsw.efConstruction = int(spec.ef_construction)
        return cls(raw, ids, positions[order].astype(np.int64), spec)

    @property
    def removed(self) -> int:
        return self._removed

    def tune(self, spec: IndexSpec) -> None:
        self._spec = spec

    def settle(self, ids: np.ndarray) -> None:
        order = np.argsort(ids, kind="stable")
        self._ids, self._positions = ids[order], order.astype(np.int64)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        first = int(self.raw.ntotal)
        self.raw.add_with_ids(vectors, ids)
        order, at = self._insert_ids(ids)
        self._positions = np.insert(self._positions, at, first + order)

    def remove(self, ids: np.ndarray) -> None:
        where = np.searchsorted(self._ids, ids)
        dead = self._positions[where]
        labels = faiss.rev_swig_ptr(self.raw.id_map.data(), self.raw.id_map.size())  # a view: writes go to FAISS
        labels[dead] = -1
        self._scrub(dead, labels)
        self._ids = np.delete(self._ids, where)
        self._positions = np.delete(self._positions, where)
        self._removed += int(dead.size)

    def _scrub(self, dead: np.ndarray, labels: np.ndarray) -> None:
        """Overwrite each dead node's vector with its nearest live level-0 neighbour's (or zeros)."""
        graph = self._hnsw.hnsw
        dim = self._hnsw.d
        storage = faiss.downcast_index(self._hnsw.storage)
        stored = faiss.rev_swig_ptr(storage.get_xb(), int(storage.ntotal) * dim).reshape(-1, dim)
        links = faiss.rev_swig_ptr(graph.neighbors.data(), graph.neighbors.size())
        offsets = faiss.rev_swig_ptr(graph.offsets.data(), graph.offsets.size())
        width = graph.nb_neighbors(0)
        for node in dead.tolist():
            start = int(offsets[node]) + graph.cum_nb_neighbors(0)
            near = links[start:start + width]
            near = near[near >= 0]
            live = near[labels[near] >= 0]
            if live.size:
                nearest = live[np.argmin(((stored[live] - stored[node]) ** 2).sum(axis=1))]
                stored[node] = stored[nearest]
            else:
                stored[node] = 0.0

    def candidates(self, queries: np.ndarray, k: int) -> np.ndarray:
        params = faiss.SearchParametersHNSW()
        # The graph walk keeps ef_search candidates, each compared on the full stored vector, and
        # returns the best k of them: FAISS's own re-ranking. A larger ef_search finds more of the
        # true neighbours; distances are recomputed exactly by FaceIndex either way.
        params.efSearch = max(int(self._spec.ef_search), k)
        if self._removed:
            params.sel = self._live
        return self.raw.search(queries, k, params=params)[1]

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        positions = self._positions[np.searchsorted(self._ids, ids)]
        return self._hnsw.reconstruct_batch(positions)

    def regions(self) -> list[tuple[int, int]]:
        return [_region(faiss.downcast_index(self._hnsw.storage).codes), _region(self._hnsw.hnsw.neighbors, 4)]


def _region(vector, item_bytes: int = 1) -> tuple[int, int]:
    """A FAISS vector's (address, bytes); (0, 0) while it is empty (it has no memory yet)."""
    return (int(vector.data()), int(vector.size()) * item_bytes) if vector.size() else (0, 0)


def _unique_ids(labels: np.ndarray, expected: int, problem) -> np.ndarray:
    ids = np.sort(labels.astype(np.int64, copy=False))
    if ids.size != expected:
        raise problem(f"has {ids.size} ids for {expected} vectors")
    if ids.size and (ids[0] < 0 or (ids[1:] == ids[:-1]).any()):
        raise problem("holds negative or repeated ids")
    return ids


def spec_of(kind: str, params: dict, search: IndexSpec | None = None) -> IndexSpec:
    """The spec a manifest describes, with the search-time settings of ``search`` (or the defaults)."""
    ef_search = search.ef_search if search is not None else IndexSpec.ef_search
    return IndexSpec(kind=kind, ef_search=ef_search, **{k: operator.index(v) for k, v in params.items()})
