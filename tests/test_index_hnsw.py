"""The approximate kind (hnsw) where it is approximate: recall against flat on clustered synthetic
faces, exact distances, removal by tombstone, saves of one kind loaded by another.

Real FAISS throughout; the faces come from tests/clustered_faces.py (people as clusters, distances
like FaceNet's), because on uniform random vectors recall says nothing about faces.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from clustered_faces import ClusteredFaces
from index import (
    COMPACT_SHARE, INDEX_FILE, MANIFEST_FILE, FaceIndex, IndexCorrupt, IndexSpec, IndexSpecError, IndexStale,
    read_manifest,
)

MODEL = "facenet-test@sha256:0000"
HNSW = IndexSpec(kind="hnsw")  # the shipped defaults: what the recall test vouches for
FACES = 20_000
PROBES = 2_000


@pytest.fixture(scope="module")
def people() -> ClusteredFaces:
    return ClusteredFaces()


@pytest.fixture(scope="module")
def roster(people):
    """20,000 faces of 4,000 people under shuffled sparse ids, and both indexes over them."""
    vectors = people.faces(FACES)
    ids = np.random.default_rng(3).permutation(10 * FACES)[:FACES].astype(np.int64)
    return ids, vectors, FaceIndex.build(ids, vectors), FaceIndex.build(ids, vectors, spec=HNSW)


def person_of(people, ids, found):
    """The person of each found id (-1 for padding)."""
    rows = np.searchsorted(np.sort(ids), found)
    row_of_sorted = np.argsort(ids)
    rows = np.where(found >= 0, row_of_sorted[np.minimum(rows, len(ids) - 1)], -1)
    return np.where(found >= 0, people.person_of(rows), -1)


def test_hnsw_finds_flats_nearest_person_and_reports_exact_distances(people, roster):
    ids, vectors, flat, hnsw = roster
    probes = people.probes(np.random.default_rng(4).choice(FACES // 5, PROBES, replace=False))
    want_distances, want_ids = flat.search(probes, 50)
    distances, found = hnsw.search(probes, 50)
    same_person = person_of(people, ids, found[:, 0]) == person_of(people, ids, want_ids[:, 0])
    assert same_person.mean() >= 0.999, f"recall of flat's nearest person {same_person.mean():.4f}"
    # What identify decides at the default threshold: everyone flat names, hnsw names too.
    named_by_flat = want_distances[:, 0] < 0.7
    assert named_by_flat.sum() > PROBES // 4
    # At most one miss: a graph built on several threads is not the same graph twice.
    assert (~(same_person & (distances[:, 0] < 0.7)))[named_by_flat].sum() <= 1
    # Every distance is the true L2 distance to the stored vector of the id beside it, nearest first.
    stored = vectors[np.argsort(ids)][np.searchsorted(np.sort(ids), found)]
    np.testing.assert_allclose(distances, np.linalg.norm(stored - probes[:, None, :], axis=-1), rtol=0, atol=1e-6)
    assert (np.diff(distances, axis=1) >= 0).all()
    # Where both found the same face, they say the same distance (the same float32 computation).
    same = found[:, 0] == want_ids[:, 0]
    assert same.mean() >= 0.999
    np.testing.assert_array_equal(distances[same, 0], want_distances[same, 0])


def test_removed_faces_are_never_found_and_their_vectors_leave_the_file(people, tmp_path):
    ids, vectors = np.arange(5_000) * 7, people.faces(5_000)
    hnsw = FaceIndex.build(ids, vectors, spec=HNSW)
    gone = ids[::20]  # 5%: below the share at which a rebuild is due
    assert hnsw.remove(np.concatenate([gone, [-5, 10 ** 9]])) == gone.size
    assert len(hnsw) == ids.size - gone.size and gone[0] not in hnsw and ids[1] in hnsw
    assert hnsw.removed_share == pytest.approx(gone.size / ids.size) and hnsw.removed_share < COMPACT_SHARE
    live = np.isin(ids, gone, invert=True)
    kept = FaceIndex.build(ids[live], vectors[live])
    probes = people.probes(np.random.default_rng(5).choice(1_000, 500, replace=False))
    _, found = hnsw.search(probes, 50)
    assert not np.isin(found, gone).any() and (found >= 0).all()
    _, want = kept.search(probes, 50)
    assert np.mean(people.person_of(found[:, 0] // 7) == people.person_of(want[:, 0] // 7)) >= 0.998

    hnsw.save(tmp_path, generation=3, model_id=MODEL)
    data = (tmp_path / INDEX_FILE).read_bytes()
    assert vectors[1].tobytes() in data  # the check below can see a stored vector
    assert not any(vectors[row].tobytes() in data for row in range(0, 1_000, 20))  # a deleted face's encoding is gone

    loaded = FaceIndex.load(tmp_path, model_id=MODEL, spec=HNSW)
    assert len(loaded) == len(hnsw) and loaded.removed_share == hnsw.removed_share
    np.testing.assert_array_equal(loaded.ids(), hnsw.ids())
    for got, want in zip(loaded.search(probes, 50), hnsw.search(probes, 50)):
        np.testing.assert_array_equal(got, want)
    assert read_manifest(tmp_path).count == ids.size - gone.size
    loaded.add(gone[:3], vectors[1:4])  # an id removed may come back, as a new face
    assert gone[0] in loaded and loaded.search(vectors[1], 2)[1][0].tolist() in ([gone[0], ids[1]], [ids[1], gone[0]])


def test_a_save_of_another_kind_or_graph_is_stale_and_ef_search_applies_as_it_is(tmp_path):
    vectors = ClusteredFaces().faces(500)
    FaceIndex.build(np.arange(500), vectors).save(tmp_path / "flat", generation=1, model_id=MODEL)
    FaceIndex.build(np.arange(500), vectors, spec=HNSW).save(tmp_path / "hnsw", generation=1, model_id=MODEL)
    manifest = read_manifest(tmp_path / "hnsw")
    assert (manifest.kind, manifest.params) == ("hnsw", {"m": 48, "ef_construction": 80})
    assert (read_manifest(tmp_path / "flat").kind, read_manifest(tmp_path / "flat").params) == ("flat", {})

    with pytest.raises(IndexStale, match=r"built as flat, the configuration asks for hnsw \(m=48"):
        FaceIndex.load(tmp_path / "flat", model_id=MODEL, spec=HNSW)
    with pytest.raises(IndexStale, match=r"built as hnsw \(m=48, ef_construction=80\), .* flat"):
        FaceIndex.load(tmp_path / "hnsw", model_id=MODEL, spec=IndexSpec())
    with pytest.raises(IndexStale, match="m=16"):
        FaceIndex.load(tmp_path / "hnsw", model_id=MODEL, spec=IndexSpec(kind="hnsw", m=16))
    with pytest.raises(IndexStale, match="ef_construction=40"):
        FaceIndex.load(tmp_path / "hnsw", model_id=MODEL, spec=IndexSpec(kind="hnsw", ef_construction=40))
    wider = FaceIndex.load(tmp_path / "hnsw", model_id=MODEL, spec=IndexSpec(kind="hnsw", ef_search=1000))
    assert wider.spec.ef_search == 1000 and len(wider) == 500
    assert FaceIndex.load(tmp_path / "hnsw", model_id=MODEL).spec.kind == "hnsw"  # no spec: as saved

    # A manifest from before kinds existed is a flat index's.
    path = tmp_path / "flat" / MANIFEST_FILE
    old = {k: v for k, v in json.loads(path.read_text()).items() if k not in ("kind", "params")}
    path.write_text(json.dumps(old))
    assert FaceIndex.load(tmp_path / "flat", model_id=MODEL, spec=IndexSpec()).spec.kind == "flat"


@pytest.mark.parametrize("changes, message", [
    ({"kind": "hnsw", "params": {"m": 48, "ef_construction": 80}}, "not an IndexIDMap"),  # a flat file
    ({"kind": "ivf"}, "unknown index kind 'ivf'"),
    ({"kind": "hnsw", "params": {"m": "many"}}, "unusable hnsw parameters"),
], ids=["kind-disagrees-with-file", "unknown-kind", "bad-params"])
def test_a_manifest_that_misnames_the_kind_is_corrupt(tmp_path, changes, message):
    FaceIndex.build(np.arange(50), ClusteredFaces().faces(50)).save(tmp_path, generation=1, model_id=MODEL)
    path = tmp_path / MANIFEST_FILE
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))
    with pytest.raises(IndexCorrupt, match=message):
        FaceIndex.load(tmp_path, model_id=MODEL)


def test_hnsw_manifest_with_other_links_than_the_file_is_corrupt(tmp_path):
    FaceIndex.build(np.arange(50), ClusteredFaces().faces(50), spec=HNSW).save(tmp_path, generation=1, model_id=MODEL)
    path = tmp_path / MANIFEST_FILE
    path.write_text(json.dumps({**json.loads(path.read_text()), "params": {"m": 16, "ef_construction": 80}}))
    with pytest.raises(IndexCorrupt, match="48 links per node, the manifest says m=16"):
        FaceIndex.load(tmp_path, model_id=MODEL)


@pytest.mark.parametrize("settings, message", [
    ({"kind": "ivf"}, "must be one of flat, hnsw, not 'ivf'"),
    ({"kind": "hnsw", "m": 1}, "m must be a whole number of at least 2"),
    ({"kind": "hnsw", "ef_search": 0}, "ef_search must be"),
    ({"kind": "hnsw", "ef_construction": 8.5}, "ef_construction must be"),
    ({"kind": "hnsw", "m": True}, "m must be"),
])
def test_bad_specs_are_refused(settings, message):
    with pytest.raises(IndexSpecError, match=message):
        IndexSpec(**settings)
