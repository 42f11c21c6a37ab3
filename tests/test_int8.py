"""``model.precision: int8``: FaceNet quantised by NNCF at conversion, close to fp32 on faces it was not
calibrated on, under a model id of its own, made once and cached, and made without telemetry."""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from service.errors import ModelError, PhotoError
from service.pipeline.encoder import Encoder
from service.pipeline.model_id import NNCF_VERSION, makes_encodings_of
from service.pipeline.quantize import Calibration, require_nncf
from service.pipeline.runtime import load_facenet

from quiet_home import run_with_empty_home



@pytest.fixture(scope="module")
def held_out(one_face_crops, celebrity_dir):
    """The 5-celebrity val photos' faces (int8 is calibrated on the train photos), with their people."""
    return one_face_crops(sorted((celebrity_dir / "val").glob("*/*")))


def _encode(net, crops, config):
    return Encoder(net, config.model.normalization, config.model.batch_size, config.model.flip).encode(crops)


def _auc(vectors, people) -> float:
    upper = np.triu_indices(len(people), 1)
    same = np.equal.outer(people, people)[upper]
    return roc_auc_score(same, -np.linalg.norm(vectors[:, None] - vectors[None], axis=2)[upper])


@pytest.mark.slow  # the int8_facenet fixture quantises (about 28 s, once per run)
def test_int8_is_close_to_fp32_on_faces_it_was_not_calibrated_on(int8_facenet, facenet, held_out, config):
    crops, people = held_out
    assert len(crops) >= 20
    exact, quantised = _encode(facenet, crops, config), _encode(int8_facenet, crops, config)
    apart = np.linalg.norm(exact - quantised, axis=1)
    # Not fp32's answer, so not its model id; within what bench/precision_accuracy.py measured on LFW
    # (median 0.04, max 0.25 over 5,825 faces).
    assert 1e-3 < np.median(apart) < 0.08 and apart.max() < 0.3, (np.median(apart), apart.max())
    assert _auc(quantised, people) == pytest.approx(_auc(exact, people), abs=2e-3)
    assert int8_facenet.model_id == f"{facenet.model_id}+int8-nncf{NNCF_VERSION}"


@pytest.mark.slow
def test_a_head_for_fp32_encodings_serves_int8_ones(config, int8_facenet):
    network = f"{int8_facenet.model_id}/{config.model.normalization}{'+flip' if config.model.flip else ''}"
    assert makes_encodings_of(config, network)
    assert not makes_encodings_of(config, network.replace("+int8", "+int4"))


@pytest.mark.slow
def test_the_quantised_copy_is_made_once_then_loaded(int8_facenet, int8_cache, config):
    (xml,) = int8_cache.glob(f"*.int8-nncf{NNCF_VERSION}-{config.model.normalization}/facenet.xml")
    stamp = xml.stat().st_mtime_ns

    def refuse():
        raise AssertionError("quantised again although the cache holds a quantised copy")

    again = load_facenet(config.model.weights, int8_cache, config.expected_sha256, "openvino",
                         precision="int8", calibration=Calibration(config.model.normalization, refuse))
    faces = np.random.default_rng(3).normal(size=(4, 160, 160, 3)).astype(np.float32)
    np.testing.assert_allclose(again.embed(faces), int8_facenet.embed(faces), atol=1e-5)
    assert xml.stat().st_mtime_ns == stamp and again.model_id == int8_facenet.model_id


def test_int8_failures_are_clear_model_errors_and_checked_first(config, fp32_only_cache, monkeypatch):
    def load(calibration):
        return load_facenet(config.model.weights, fp32_only_cache, config.expected_sha256, "openvino",
                            precision="int8", calibration=calibration)

    with pytest.raises(ModelError, match="needs its calibration"):
        load(None)
    with pytest.raises(ModelError, match="openvino"):
        load_facenet(config.model.weights, fp32_only_cache, config.expected_sha256, "tensorflow", precision="int8")

    def unreadable():
        raise PhotoError("a calibration photo does not decode")

    with pytest.raises(ModelError, match="int8 quantisation failed: a calibration photo does not decode"):
        load(Calibration("test", unreadable))
    calls = []
    nncf = require_nncf()
    monkeypatch.setattr(nncf, "__version__", "0.0.1")
    with pytest.raises(ModelError, match=f"made with NNCF {NNCF_VERSION}; 0.0.1 is installed"):
        load(Calibration("test", lambda: calls.append(1)))
    assert calls == []  # NNCF is checked before the calibration's detection pass
    monkeypatch.setitem(sys.modules, "nncf", None)
    with pytest.raises(ModelError, match=f"pip install nncf=={NNCF_VERSION}"):
        require_nncf()
    assert not list(fp32_only_cache.glob("*.int8-*/facenet.xml"))  # nothing half-made left to load


@pytest.mark.slow
def test_a_damaged_quantised_copy_is_made_again(config, fp32_only_cache):
    cache = fp32_only_cache
    faces = np.random.default_rng(4).normal(size=(16, 160, 160, 3)).astype(np.float32)
    calls = []

    def calibration():
        calls.append(1)
        return faces  # few and random: this test is about the cache, not accuracy

    first = load_facenet(config.model.weights, cache, config.expected_sha256, "openvino", precision="int8",
                         calibration=Calibration("test", calibration))
    (folder,) = cache.glob(f"*.int8-nncf{NNCF_VERSION}-test")  # named by what its calibration depends on
    (folder / "facenet.xml").write_text("<net>not a network")
    repaired = load_facenet(config.model.weights, cache, config.expected_sha256, "openvino", precision="int8",
                            calibration=Calibration("test", calibration))
    assert len(calls) == 2
    np.testing.assert_allclose(repaired.embed(faces[:2]), first.embed(faces[:2]), atol=1e-5)
    assert [p.name for p in cache.iterdir() if p.name.startswith(".")] == []


@pytest.mark.slow
def test_processes_starting_together_on_an_empty_cache_quantise_once(config, fp32_only_cache):
    faces = np.random.default_rng(5).normal(size=(16, 160, 160, 3)).astype(np.float32)
    calls = []

    def calibration():
        calls.append(1)
        return faces

    def load(_):
        return load_facenet(config.model.weights, fp32_only_cache, config.expected_sha256, "openvino",
                            precision="int8", calibration=Calibration("test", calibration))

    with ThreadPoolExecutor(2) as pool:  # the lock is a file lock: threads contend for it as processes do
        first, second = pool.map(load, range(2))
    assert len(calls) == 1
    np.testing.assert_allclose(first.embed(faces[:2]), second.embed(faces[:2]), atol=1e-6)


def test_nncf_is_loaded_without_its_usage_reporting(tmp_path, project_root):
    """Imported plainly, NNCF writes a client id under the home folder and reports each quantize call to
    a web analytics service; imported by the service, it leaves no trace and keeps its no-op stub."""
    probe = ("from service.pipeline.quantize import require_nncf; require_nncf();"
             "import nncf.telemetry.wrapper as w; print(type(w.telemetry).__name__)")
    out = run_with_empty_home(probe, tmp_path / "home", project_root)
    assert out.split()[-1] == "MagicMock"
    assert list((tmp_path / "home").rglob("*")) == []
