"""The Keras 2.1 weights file rebuilt in Keras 3: every weight loaded, the cache keyed and trusted."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest

from service.errors import ModelError
from service.pipeline.network import convert_keras2_h5
from service.pipeline.runtime import load_facenet
from service.pipeline.model_id import file_sha256


@pytest.fixture(scope="module")
def weights(config):
    if not config.model.weights.is_file():
        pytest.skip(f"FaceNet weights not found at {config.model.weights} (fetched by `make models`)")
    return config.model.weights


def test_weights_match_the_manifest(weights, config):
    assert file_sha256(weights) == config.expected_sha256


def test_a_weight_missing_from_the_file_fails_loudly(weights, tmp_path):
    damaged = tmp_path / "damaged.h5"
    shutil.copy(weights, damaged)
    with h5py.File(damaged, "r+") as h5:
        del h5["model_weights/Bottleneck/Bottleneck/kernel:0"]
        h5["model_weights/Bottleneck"].attrs["weight_names"] = np.array([], dtype="S1")
    with pytest.raises(ModelError, match="Bottleneck"):
        convert_keras2_h5(damaged)


def test_weights_of_the_wrong_shape_fail_loudly(weights, tmp_path):
    damaged = tmp_path / "damaged.h5"
    shutil.copy(weights, damaged)
    with h5py.File(damaged, "r+") as h5:
        del h5["model_weights/Bottleneck/Bottleneck/kernel:0"]
        h5["model_weights/Bottleneck/Bottleneck"].create_dataset("kernel:0", data=np.zeros((1792, 64), np.float32))
    with pytest.raises(ModelError, match="kernel"):
        convert_keras2_h5(damaged)


def test_wrong_hash_is_refused(weights):
    with pytest.raises(ModelError, match="sha256"):
        load_facenet(weights, expected_sha256="0" * 64)


def test_missing_weights_say_how_to_fetch_them(tmp_path):
    with pytest.raises(ModelError, match="make models"):
        load_facenet(tmp_path / "absent.h5")


def test_cache_is_written_once_and_encodes_identically(weights, tmp_path, facenet):
    batch = np.random.default_rng(3).normal(size=(3, 160, 160, 3)).astype(np.float32)
    first = load_facenet(weights, tmp_path, runtime="tensorflow")  # converts and writes the cache
    (cached,) = tmp_path.glob("facenet-*.savedmodel")
    assert cached.name == f"facenet-{file_sha256(weights)[:16]}.savedmodel"
    stamp = (cached / "saved_model.pb").stat().st_mtime_ns
    second = load_facenet(weights, tmp_path, runtime="tensorflow")  # reads it
    assert (cached / "saved_model.pb").stat().st_mtime_ns == stamp
    assert first.model_id == second.model_id == facenet.model_id
    np.testing.assert_allclose(first.embed(batch), second.embed(batch), atol=1e-4)
    np.testing.assert_allclose(second.embed(batch), facenet.embed(batch), atol=1e-4)


def test_damaged_cache_is_rebuilt(weights, tmp_path):
    load_facenet(weights, tmp_path, runtime="tensorflow")
    (cached,) = tmp_path.glob("facenet-*.savedmodel")
    (cached / "saved_model.pb").write_bytes(b"not a graph")
    rebuilt = load_facenet(weights, tmp_path, runtime="tensorflow")
    assert rebuilt.embed(np.zeros((1, 160, 160, 3), np.float32)).shape == (1, 128)
    assert (cached / "saved_model.pb").stat().st_size > 1000
