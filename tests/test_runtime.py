"""The network's runtimes: OpenVINO gives TensorFlow's encodings on real faces, its converted copy is
cached and repaired, and concurrent callers share the network's runs."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from service.errors import ModelError
from service.pipeline.batching import BatchingEmbed
from service.pipeline.encoder import Encoder
from service.pipeline.quiet_imports import import_openvino
from service.pipeline.runtime import load_facenet

from quiet_home import run_with_empty_home


@pytest.fixture(scope="module")
def runtimes(config, facenet):
    """Both runtimes over the same cached conversion (one of them is the session's ``facenet``)."""
    other = "tensorflow" if facenet.runtime == "openvino" else "openvino"
    loaded = {facenet.runtime: facenet,
              other: load_facenet(config.model.weights, config.model.cache_dir, config.expected_sha256, other)}
    return loaded


@pytest.fixture(scope="module")
def celebrity_crops(one_face_crops, celebrity_dir):
    """The face of each 5-celebrity photo that shows one, with its person."""
    return one_face_crops(sorted(celebrity_dir.glob("*/*/*")))


def test_openvino_encodes_real_faces_as_tensorflow_does(runtimes, celebrity_crops, config):
    crops, people = celebrity_crops
    assert len(crops) > 100
    encoded = {name: Encoder(net, config.model.normalization, config.model.batch_size, config.model.flip).encode(crops)
               for name, net in runtimes.items()}
    apart = np.linalg.norm(encoded["openvino"] - encoded["tensorflow"], axis=1)
    assert apart.max() < 1e-4, f"largest L2 between the runtimes' encodings: {apart.max():.2e}"
    assert runtimes["openvino"].model_id == runtimes["tensorflow"].model_id

    # So the celebrity set's ranking is the same: its AUC over every pair of faces, per runtime.
    same = np.equal.outer(people, people)[np.triu_indices(len(people), 1)]
    aucs = {}
    for name, vectors in encoded.items():
        distances = np.linalg.norm(vectors[:, None] - vectors[None], axis=2)[np.triu_indices(len(people), 1)]
        aucs[name] = roc_auc_score(same, -distances)
    assert aucs["openvino"] == pytest.approx(aucs["tensorflow"], abs=1e-6) and aucs["openvino"] > 0.99


def _has_bf16() -> bool:
    return "BF16" in import_openvino().Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def test_bfloat16_is_close_to_fp32_but_carries_its_own_model_id(runtimes, celebrity_crops, config):
    if not _has_bf16():
        with pytest.raises(ModelError, match="bfloat16 units"):
            load_facenet(config.model.weights, config.model.cache_dir, config.expected_sha256, "openvino",
                         precision="bf16")
        return
    bf16 = load_facenet(config.model.weights, config.model.cache_dir, config.expected_sha256, "openvino",
                        precision="bf16")
    assert bf16.model_id == runtimes["openvino"].model_id + "+bf16"
    crops, people = celebrity_crops
    encoded = [Encoder(net, config.model.normalization, config.model.batch_size, config.model.flip).encode(crops)
               for net in (runtimes["openvino"], bf16)]
    apart = np.linalg.norm(encoded[0] - encoded[1], axis=1)
    # Not fp32's answer (so not the same model id), but within what bench/precision_accuracy.py measured on LFW.
    assert 1e-4 < apart.max() < 0.04, apart.max()
    same = np.equal.outer(people, people)[np.triu_indices(len(people), 1)]
    aucs = [roc_auc_score(same, -np.linalg.norm(v[:, None] - v[None], axis=2)[np.triu_indices(len(people), 1)])
            for v in encoded]
    assert aucs[1] == pytest.approx(aucs[0], abs=1e-3)


def test_bfloat16_is_refused_where_it_cannot_run(config):
    with pytest.raises(ModelError, match="openvino"):
        load_facenet(config.model.weights, config.model.cache_dir, config.expected_sha256, "tensorflow",
                     precision="bf16")


def test_loading_the_networks_reports_nothing(tmp_path, project_root):
    """``import openvino`` alone sends an "import" event to a web analytics service and writes a client
    id and a usage count under ~/intel; the service's networks load with neither."""
    probe = ("from service.config import load_config; from service.pipeline.pipeline import build_pipeline;"
             "build_pipeline(load_config()); import openvino.tools.ovc.telemetry_utils as t; print(t.tm.__name__)")
    home = tmp_path / "home"
    # OpenVINO's own no-op stand-in for its telemetry module, bound when openvino was first imported
    assert run_with_empty_home(probe, home, project_root).split()[-1] == "openvino.tools.ovc.telemetry_stub"
    assert not (home / "intel").exists(), sorted(home.rglob("*"))


def test_single_faces_and_batches_agree(runtimes):
    """Batch 1 and batch 32 take different kernels; a face's encoding must not depend on its company."""
    batch = np.random.default_rng(5).normal(size=(32, 160, 160, 3)).astype(np.float32)
    net = runtimes["openvino"]
    together = net.embed(batch)
    alone = np.concatenate([net.embed(batch[i:i + 1]) for i in (0, 17, 31)])
    np.testing.assert_allclose(alone, together[[0, 17, 31]], atol=1e-4)


def test_openvino_copy_is_cached_and_a_damaged_one_converted_again(config, tmp_path):
    import shutil

    saved = next(config.model.cache_dir.glob("facenet-*.savedmodel"))
    shutil.copytree(saved, tmp_path / saved.name)  # spares the Keras conversion; OpenVINO's is the subject
    first = load_facenet(config.model.weights, tmp_path, config.expected_sha256, "openvino")
    (folder,) = tmp_path.glob("facenet-*.openvino-*")
    xml = folder / "facenet.xml"
    stamp = xml.stat().st_mtime_ns
    zero = np.zeros((1, 160, 160, 3), np.float32)
    expected = first.embed(zero)
    again = load_facenet(config.model.weights, tmp_path, config.expected_sha256, "openvino")
    assert xml.stat().st_mtime_ns == stamp
    xml.write_text("<net>not a network")
    repaired = load_facenet(config.model.weights, tmp_path, config.expected_sha256, "openvino")
    np.testing.assert_allclose(repaired.embed(zero), expected, atol=1e-5)
    np.testing.assert_allclose(again.embed(zero), expected, atol=1e-5)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporaries left


def test_unknown_runtime_is_refused(config):
    with pytest.raises(ModelError, match="runtime"):
        load_facenet(config.model.weights, config.model.cache_dir, runtime="onnx")


# --- batching concurrent callers -------------------------------------------------------------------


class SlowNetwork:
    """Row sums, slowly: long enough for callers to pile up behind a run."""

    def __init__(self, seconds: float = 0.05, fail_on: float | None = None):
        self.seconds, self.fail_on, self.batches = seconds, fail_on, []

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.batches.append(len(batch))
        time.sleep(self.seconds)
        if self.fail_on is not None and (batch == self.fail_on).any():
            raise RuntimeError("network failed")
        return batch.sum(axis=1, keepdims=True)


def _call_together(embed, batches):
    results, errors = [None] * len(batches), [None] * len(batches)
    start = threading.Barrier(len(batches))

    def call(i):
        start.wait()
        try:
            results[i] = embed(batches[i])
        except Exception as exc:
            errors[i] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(batches))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads), "a caller hung"
    return results, errors


def test_concurrent_callers_share_runs_and_each_gets_its_own_rows():
    network = SlowNetwork()
    embed = BatchingEmbed(network, max_rows=8)
    batches = [np.full((1 + i % 3, 4), float(i)) for i in range(16)]
    results, errors = _call_together(embed, batches)
    assert errors == [None] * 16
    for i, (batch, result) in enumerate(zip(batches, results)):
        np.testing.assert_array_equal(result, batch.sum(axis=1, keepdims=True)), i
    assert len(network.batches) < 16 and max(network.batches) <= 8
    assert sum(network.batches) == sum(len(b) for b in batches)


def test_a_lone_caller_runs_at_once():
    network = SlowNetwork(seconds=0.0)
    embed = BatchingEmbed(network, max_rows=8)
    started = time.perf_counter()
    np.testing.assert_array_equal(embed(np.ones((2, 3))), [[3.0], [3.0]])
    assert network.batches == [2]
    assert time.perf_counter() - started < 1  # nothing waits for company that is not coming


def test_a_batch_larger_than_the_limit_runs_alone():
    network = SlowNetwork(seconds=0.0)
    embed = BatchingEmbed(network, max_rows=4)
    assert embed(np.ones((10, 2))).shape == (10, 1) and network.batches == [10]


def test_a_failed_run_fails_its_callers_and_the_next_ones_run():
    network = SlowNetwork(fail_on=3.0)
    embed = BatchingEmbed(network, max_rows=64)
    batches = [np.full((1, 2), float(i)) for i in range(8)]
    results, errors = _call_together(embed, batches)
    failed = {i for i, e in enumerate(errors) if e is not None}
    assert 3 in failed and all(isinstance(errors[i], RuntimeError) for i in failed)
    for i in set(range(8)) - failed:
        np.testing.assert_array_equal(results[i], [[2.0 * i]])
    np.testing.assert_array_equal(embed(np.full((1, 2), 1.0)), [[2.0]])  # not stuck busy


def test_a_conversion_published_by_another_process_meanwhile_is_kept(tmp_path):
    """Two processes converting at once: the second to finish keeps the first's folder, which may be
    in use, and leaves no temporary behind."""
    from service.pipeline.runtime import writing_folder

    target = tmp_path / "facenet.openvino"
    with writing_folder(target) as ours:
        (ours / "facenet.xml").write_text("ours")
        target.mkdir()  # the other process lands its folder meanwhile
        (target / "facenet.xml").write_text("theirs")
    assert (target / "facenet.xml").read_text() == "theirs"
    assert [p.name for p in tmp_path.iterdir()] == ["facenet.openvino"]


def test_a_damaged_cache_is_replaced_and_a_failed_write_leaves_nothing(tmp_path):
    from service.pipeline.runtime import writing_folder

    target = tmp_path / "facenet.openvino"
    target.mkdir()
    (target / "facenet.xml").write_text("damaged")
    with writing_folder(target, replace=True) as ours:
        (ours / "facenet.xml").write_text("fresh")
    assert (target / "facenet.xml").read_text() == "fresh"
    with pytest.raises(OSError):
        with writing_folder(tmp_path / "other") as ours:
            (ours / "facenet.xml").write_text("half")
            raise OSError("disk full")
    assert [p.name for p in tmp_path.iterdir()] == ["facenet.openvino"]


def test_a_network_answering_the_wrong_rows_fails_every_caller_and_hangs_none():
    embed = BatchingEmbed(lambda batch: batch[:1].sum(axis=1, keepdims=True), max_rows=64)
    results, errors = _call_together(embed, [np.ones((2, 3)) for _ in range(4)])
    assert all(isinstance(e, RuntimeError) for e in errors), errors
    broken = BatchingEmbed(lambda batch: None)
    with pytest.raises(TypeError):
        broken(np.ones((1, 3)))
