"""index/: exact search, id bookkeeping, and saves that are either loadable or detected as bad.

Small random unit vectors only: no model, no photos. The tests on the ``face_index`` fixture run on
every kind of index: on 300 vectors, an HNSW search keeps more candidates (ef_search) than there are
vectors, so it must find what flat finds. tests/test_index_hnsw.py measures it where it cannot.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from index import (
    INDEX_FILE,
    MANIFEST_FILE,
    DuplicateIdError,
    FaceIndex,
    IndexCorrupt,
    IndexInputError,
    IndexLoadError,
    IndexMissing,
    IndexSpec,
    IndexStale,
    read_manifest,
)

DIM = 128
MODEL = "facenet-test@sha256:0000"


def unit_vectors(n: int, seed: int, dim: int = DIM) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def brute_force(stored: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int):
    """Nearest ``k`` by numpy: (distances, ids), nearest first."""
    distances = np.linalg.norm(stored[None, :, :] - queries[:, None, :], axis=-1)
    order = np.argsort(distances, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(distances, order, 1), ids[order]


@pytest.fixture
def stored() -> tuple[np.ndarray, np.ndarray]:
    """300 unit vectors under sparse, shuffled ids."""
    ids = np.random.default_rng(1).permutation(10_000)[:300].astype(np.int64)
    return ids, unit_vectors(300, seed=2)


@pytest.fixture(params=["flat", "hnsw"])
def face_index(stored, request) -> FaceIndex:
    index = FaceIndex(spec=IndexSpec(kind=request.param))
    index.add(*stored)
    return index


@pytest.fixture
def saved(tmp_path: Path, face_index: FaceIndex) -> Path:
    face_index.save(tmp_path, generation=7, model_id=MODEL)
    return tmp_path


# --- search ---


def test_search_matches_brute_force_with_true_l2(face_index, stored):
    ids, vectors = stored
    queries = np.concatenate([unit_vectors(40, seed=3), vectors[:5]])  # includes exact hits at 0
    distances, found = face_index.search(queries, 10)
    want_distances, want_ids = brute_force(vectors, ids, queries, 10)
    assert distances.dtype == np.float32 and found.dtype == np.int64
    assert distances.shape == found.shape == (45, 10)
    np.testing.assert_array_equal(found, want_ids)
    np.testing.assert_allclose(distances, want_distances, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(distances[-5:, 0], 0.0)


def test_single_query_vector_is_answered_as_one_row(face_index, stored):
    ids, vectors = stored
    distances, found = face_index.search(vectors[3], 2)
    assert distances.shape == found.shape == (1, 2)
    assert found[0, 0] == ids[3] and distances[0, 0] == 0.0


def test_fewer_vectors_than_k_are_padded_with_inf_and_minus_one():
    index = FaceIndex()
    index.add([4, 9], unit_vectors(2, seed=4))
    distances, found = index.search(unit_vectors(3, seed=5), 5)
    assert found.shape == (3, 5)
    assert (found[:, :2] >= 0).all() and (found[:, 2:] == -1).all()
    assert np.isfinite(distances[:, :2]).all() and np.isposinf(distances[:, 2:]).all()


def test_empty_index_returns_only_padding():
    distances, found = FaceIndex().search(unit_vectors(2, seed=6), 3)
    assert (found == -1).all() and np.isposinf(distances).all()


def test_bad_queries_and_k_are_refused(face_index):
    with pytest.raises(IndexInputError):
        face_index.search(np.zeros((2, DIM - 1), np.float32), 3)
    with pytest.raises(IndexInputError):
        face_index.search(np.full(DIM, np.nan, np.float32), 3)
    with pytest.raises(IndexInputError):
        face_index.search(unit_vectors(1, seed=7), 0)


# --- add / remove / contains ---


def test_add_remove_contains_len(face_index, stored):
    ids, _ = stored
    assert len(face_index) == 300
    assert ids[0] in face_index and 10_001 not in face_index and "x" not in face_index
    assert sorted(face_index.ids().tolist()) == sorted(ids.tolist())
    assert face_index.remove([ids[0], ids[1], ids[0], 10_001, -1]) == 2
    assert len(face_index) == 298
    assert ids[0] not in face_index and ids[2] in face_index
    assert face_index.remove([ids[0]]) == 0


def test_removed_ids_are_never_returned(face_index, stored):
    ids, vectors = stored
    gone = ids[:50]
    face_index.remove(gone)
    _, found = face_index.search(vectors[:50], 300)  # k above the count: every stored id, plus padding
    assert not np.isin(found, gone).any()
    assert (found[:, :250] >= 0).all() and (found[:, 250:] == -1).all()
    distances, found = face_index.search(vectors[:50], 10)
    want_distances, want_ids = brute_force(vectors[50:], ids[50:], vectors[:50], 10)
    np.testing.assert_array_equal(found, want_ids)
    np.testing.assert_allclose(distances, want_distances, atol=1e-5, rtol=0)


def test_removed_id_can_be_added_again(face_index, stored):
    ids, vectors = stored
    face_index.remove([ids[0]])
    face_index.add([ids[0]], vectors[1:2])
    _, found = face_index.search(vectors[1], 2)
    assert set(found[0]) == {ids[0], ids[1]}


@pytest.mark.parametrize("new_ids", [[20_000, 20_000], "taken"], ids=["within-call", "already-present"])
def test_duplicate_ids_are_refused_and_index_unchanged(face_index, stored, new_ids):
    ids, vectors = stored
    new_ids = [20_001, int(ids[5])] if new_ids == "taken" else new_ids
    before = face_index.search(vectors[:20], 5)
    with pytest.raises(DuplicateIdError) as raised:
        face_index.add(new_ids, unit_vectors(2, seed=8))
    assert isinstance(raised.value, ValueError)
    assert len(face_index) == 300 and 20_000 not in face_index and 20_001 not in face_index
    after = face_index.search(vectors[:20], 5)
    np.testing.assert_array_equal(before[1], after[1])
    np.testing.assert_array_equal(before[0], after[0])


@pytest.mark.parametrize("ids, vectors", [
    ([1, 2], np.zeros((3, DIM))),                 # count mismatch
    ([1], np.zeros((1, DIM + 1))),                # wrong dim
    ([1.5], np.zeros((1, DIM))),                  # float id
    ([-1], np.zeros((1, DIM))),                   # -1 is the padding id
    ([[1]], np.zeros((1, DIM))),                  # 2-D ids
    ([1], np.full((1, DIM), np.inf)),             # not finite
], ids=["count", "dim", "float-id", "negative-id", "2d-ids", "inf"])
def test_bad_input_is_refused(ids, vectors):
    index = FaceIndex()
    with pytest.raises(IndexInputError):
        index.add(ids, vectors)
    assert len(index) == 0


def test_other_dims_work():
    vectors = unit_vectors(20, seed=9, dim=8)
    index = FaceIndex(dim=8)
    index.add(np.arange(20), vectors)
    _, found = index.search(vectors[7], 1)
    assert found[0, 0] == 7


# --- build ---


def test_build_in_chunks_reports_progress(stored):
    ids, vectors = stored
    calls: list[int] = []
    built = FaceIndex.build(ids, vectors, chunk=64, progress=calls.append)
    assert calls == [64, 64, 64, 64, 44] and sum(calls) == len(ids)
    assert np.all(np.cumsum(calls) > 0) and np.all(np.diff(np.cumsum(calls)) > 0)
    queries = unit_vectors(10, seed=10)
    want_distances, want_ids = brute_force(vectors, ids, queries, 5)
    distances, found = built.search(queries, 5)
    np.testing.assert_array_equal(found, want_ids)
    np.testing.assert_allclose(distances, want_distances, atol=1e-5, rtol=0)


def test_build_refuses_duplicates_before_adding_anything():
    with pytest.raises(DuplicateIdError):
        FaceIndex.build([1, 2, 1], unit_vectors(3, seed=11), progress=pytest.fail)


# --- save / load ---


def test_save_load_round_trip(saved, face_index, stored):
    _, vectors = stored
    loaded = FaceIndex.load(saved, model_id=MODEL, generation=7)
    queries = np.concatenate([unit_vectors(30, seed=12), vectors[:3]])
    for got, want in zip(loaded.search(queries, 8), face_index.search(queries, 8)):
        np.testing.assert_array_equal(got, want)
    assert len(loaded) == len(face_index)
    np.testing.assert_array_equal(np.sort(loaded.ids()), np.sort(face_index.ids()))
    assert FaceIndex.load(saved, model_id=MODEL) is not None  # generation is optional
    manifest = read_manifest(saved)
    assert (manifest.model_id, manifest.dim, manifest.count, manifest.generation) == (MODEL, DIM, 300, 7)
    assert manifest.created_at.endswith("+00:00")
    assert sorted(p.name for p in saved.iterdir()) == [INDEX_FILE, MANIFEST_FILE]  # no temporaries


def test_loaded_index_keeps_refusing_duplicates(saved, stored):
    ids, vectors = stored
    loaded = FaceIndex.load(saved, model_id=MODEL)
    with pytest.raises(DuplicateIdError):
        loaded.add(ids[:1], vectors[:1])
    assert loaded.remove(ids[:2]) == 2 and len(loaded) == 298


def test_empty_index_round_trip(tmp_path):
    FaceIndex().save(tmp_path, generation=0, model_id=MODEL)
    loaded = FaceIndex.load(tmp_path, model_id=MODEL)
    assert len(loaded) == 0 and (loaded.search(unit_vectors(1, seed=13), 2)[1] == -1).all()


def test_missing_directory_or_files(tmp_path, saved):
    with pytest.raises(IndexMissing):
        FaceIndex.load(tmp_path / "nowhere", model_id=MODEL)
    (saved / INDEX_FILE).unlink()
    with pytest.raises(IndexMissing, match=INDEX_FILE):
        FaceIndex.load(saved, model_id=MODEL)
    (saved / MANIFEST_FILE).unlink()
    with pytest.raises(IndexMissing, match=MANIFEST_FILE):
        FaceIndex.load(saved, model_id=MODEL)


def test_tampered_index_bytes_fail_the_checksum(saved):
    path = saved / INDEX_FILE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit of one stored float
    path.write_bytes(bytes(data))
    with pytest.raises(IndexCorrupt, match="sha256") as raised:
        FaceIndex.load(saved, model_id=MODEL)
    assert "rebuilt from the database" in str(raised.value)


@pytest.mark.parametrize("text", ["{not json", "[]", '{"format_version": 1}', ""],
                         ids=["syntax", "not-object", "fields-missing", "empty"])
def test_garbage_manifest_is_corrupt(saved, text):
    (saved / MANIFEST_FILE).write_text(text)
    with pytest.raises(IndexCorrupt, match=MANIFEST_FILE):
        FaceIndex.load(saved, model_id=MODEL)


def rewrite_manifest(directory: Path, **changes) -> None:
    path = directory / MANIFEST_FILE
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


@pytest.mark.parametrize("changes", [{"count": 299}, {"dim": 64}], ids=["count", "dim"])
def test_manifest_disagreeing_with_a_sound_file_is_corrupt(saved, changes):
    rewrite_manifest(saved, **changes)
    with pytest.raises(IndexCorrupt, match="manifest says"):
        FaceIndex.load(saved, model_id=MODEL)


def test_file_faiss_cannot_read_is_corrupt(saved):
    junk = b"not a faiss index at all"
    (saved / INDEX_FILE).write_bytes(junk)
    rewrite_manifest(saved, sha256=hashlib.sha256(junk).hexdigest())
    with pytest.raises(IndexCorrupt, match="FAISS cannot read"):
        FaceIndex.load(saved, model_id=MODEL)


def test_wrong_model_is_stale(saved):
    with pytest.raises(IndexStale, match="other-model"):
        FaceIndex.load(saved, model_id="other-model")


def test_wrong_generation_is_stale(saved):
    with pytest.raises(IndexStale, match="generation 7"):
        FaceIndex.load(saved, model_id=MODEL, generation=8)


def test_another_epoch_is_stale_and_a_manifest_without_one_is_epoch_less(saved):
    """The epoch labels what the ids mean (a restored roster gives them to other faces)."""
    with pytest.raises(IndexStale, match="epoch"):
        FaceIndex.load(saved, model_id=MODEL, epoch="e2")
    manifest = json.loads((saved / MANIFEST_FILE).read_text())
    assert manifest["epoch"] == ""  # saved without one
    del manifest["epoch"]  # as written before epochs existed
    (saved / MANIFEST_FILE).write_text(json.dumps(manifest))
    assert len(FaceIndex.load(saved, model_id=MODEL, epoch="")) > 0


def test_unknown_format_version_is_stale(saved):
    rewrite_manifest(saved, format_version=99)
    with pytest.raises(IndexStale, match="version 99"):
        FaceIndex.load(saved, model_id=MODEL)


def test_all_load_errors_share_one_base():
    for error in (IndexMissing, IndexCorrupt, IndexStale):
        assert issubclass(error, IndexLoadError)


def test_save_interrupted_between_index_and_manifest_is_never_loaded_silently(
        saved, face_index, stored, monkeypatch):
    ids, vectors = stored
    old_results = FaceIndex.load(saved, model_id=MODEL).search(vectors[:10], 3)
    face_index.remove(ids[:100])
    face_index.add(np.arange(20_000, 20_050), unit_vectors(50, seed=14))

    real_replace, calls = os.replace, []

    def replace_then_crash(src, dst):
        calls.append(dst)
        if len(calls) == 2:  # the index file is in place; the manifest never gets there
            raise OSError("simulated crash")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace_then_crash)
    with pytest.raises(OSError, match="simulated crash"):
        face_index.save(saved, generation=8, model_id=MODEL)
    monkeypatch.undo()

    assert sorted(p.name for p in saved.iterdir()) == [INDEX_FILE, MANIFEST_FILE]  # temporaries cleaned
    try:
        loaded = FaceIndex.load(saved, model_id=MODEL)
    except IndexCorrupt:
        return  # detected: the caller rebuilds
    # Otherwise it must be exactly the previous save.
    assert read_manifest(saved).generation == 7
    for got, want in zip(loaded.search(vectors[:10], 3), old_results):
        np.testing.assert_array_equal(got, want)


def test_save_interrupted_before_anything_is_replaced_keeps_the_old_pair(saved, face_index, monkeypatch):
    def crash(src, dst):
        raise OSError("simulated crash")

    face_index.remove(face_index.ids()[:10])
    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        face_index.save(saved, generation=8, model_id=MODEL)
    monkeypatch.undo()
    loaded = FaceIndex.load(saved, model_id=MODEL, generation=7)
    assert len(loaded) == 300


def test_index_does_not_import_service():
    code = "import sys, index; print(sorted(m for m in sys.modules if m.split('.')[0] == 'service'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_temporaries_of_dead_writers_go_at_once_and_a_live_writers_stay(tmp_path):
    from index.saved import remove_abandoned_temporaries

    writer = ("import sys, time; from pathlib import Path; from index.saved import temporary_path; "
              "print(temporary_path(Path(sys.argv[1]), 'faces.faiss', []), flush=True); time.sleep(float(sys.argv[2]))")
    project = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": project + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "-c", writer, str(tmp_path), "0"], capture_output=True, text=True,
                          env=env, check=True)
    dead = Path(done.stdout.strip())  # its writer has exited: the name says which pid wrote it, here
    live = subprocess.Popen([sys.executable, "-c", writer, str(tmp_path), "600"], stdout=subprocess.PIPE, text=True,
                            env=env)
    try:
        alive = Path(live.stdout.readline().strip())
        elsewhere = tmp_path / f".faces.faiss.{live.pid}@another-host.abcd1234.tmp"  # no pid to ask about
        unnamed = tmp_path / ".manifest.json.abcd1234.tmp"  # as an earlier version named them
        for path in (elsewhere, unnamed):
            path.write_bytes(b"partial")
        assert dead.is_file() and alive.is_file()
        assert remove_abandoned_temporaries(tmp_path, max_age=3600) == [dead]
        old = os.path.getmtime(alive) - 7200
        for path in (elsewhere, unnamed):
            os.utime(path, (old, old))  # untouched for two hours: abandoned, whoever wrote it
        assert sorted(remove_abandoned_temporaries(tmp_path, max_age=3600)) == sorted([elsewhere, unnamed])
        assert alive.is_file()  # its writer is alive: kept
    finally:
        live.kill()
        live.wait()
    assert remove_abandoned_temporaries(tmp_path, max_age=3600) == [alive]
    assert list(tmp_path.iterdir()) == []
