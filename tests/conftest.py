"""Shared pytest fixtures: where the project and its photo sets are, and one detector per run."""

from __future__ import annotations

from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def project_root() -> Path:
    """The repository root (the folder holding config.yaml)."""
    return PROJECT_ROOT


@pytest.fixture(scope="session")
def celebrity_dir(project_root: Path) -> Path:
    """The 5-celebrity photo set (train/ and val/ folders of <person>/*.jpg)."""
    path = project_root / "models" / "data" / "5-celebrity"
    if not (path / "val").is_dir():
        pytest.skip(f"5-celebrity photos not found at {path} (fetched by `make models`)")
    return path


@pytest.fixture(scope="session")
def happy_house_dir(project_root: Path) -> Path:
    """The Happy House exercise's 96x96 face crops and expected.json."""
    path = project_root.parent / "shared" / "data" / "happy_house"
    if not path.is_dir():
        pytest.skip(f"Happy House photos not found at {path}")
    return path


@pytest.fixture(scope="session")
def detector():
    """One MTCNN detector for the whole run: building it compiles three networks."""
    from service.pipeline.detect import FaceDetector

    return FaceDetector()


@pytest.fixture(scope="session")
def reference_detector():
    """The mtcnn package's own detector (TensorFlow), which ``detector`` must agree with."""
    from service.pipeline.detect import MtcnnPackageDetector

    return MtcnnPackageDetector()


@pytest.fixture(scope="session")
def config(tmp_path_factory):
    """The project's config.yaml, with the data home in a temporary folder."""
    from service.config import load_config

    return load_config(home=str(tmp_path_factory.mktemp("home")))


@pytest.fixture(scope="session")
def facenet(config):
    """The real pretrained FaceNet, loaded once per test run."""
    from service.pipeline.runtime import load_facenet

    if not config.model.weights.is_file():
        pytest.skip(f"FaceNet weights not found at {config.model.weights} (fetched by `make models`)")
    return load_facenet(config.model.weights, config.model.cache_dir, config.expected_sha256, config.model.runtime)


def _with_fp32_openvino(config, cache: Path) -> Path:
    """``cache`` holding only OpenVINO's fp32 copy of FaceNet, linked from the project's cache."""
    from service.pipeline.model_id import file_sha256
    from service.pipeline.runtime import openvino_model_path

    fp32 = openvino_model_path(config.model.cache_dir, file_sha256(config.model.weights))
    (cache / fp32.name).symlink_to(fp32.resolve())
    return cache


@pytest.fixture
def fp32_only_cache(config, facenet, tmp_path) -> Path:
    """A model cache with OpenVINO's fp32 FaceNet and nothing made from it (an int8 copy is made anew)."""
    return _with_fp32_openvino(config, tmp_path)


@pytest.fixture(scope="session")
def int8_cache(config, facenet, tmp_path_factory) -> Path:
    """The model cache of ``int8_facenet``: its own, so every run quantises."""
    return _with_fp32_openvino(config, tmp_path_factory.mktemp("int8-cache"))


@pytest.fixture(scope="session")
def int8_facenet(config, int8_cache, detector):
    """FaceNet quantised to int8 as ``model.precision: int8`` makes it, once per test run."""
    from service.pipeline.pipeline import int8_calibration
    from service.pipeline.runtime import load_facenet

    return load_facenet(config.model.weights, int8_cache, config.expected_sha256, "openvino", precision="int8",
                        calibration=int8_calibration(config, detector))


@pytest.fixture(scope="session")
def pipeline(config, facenet, detector):
    """The default pipeline (MTCNN detection, alignment, configured normalisation and head) on the
    shared model."""
    from service.pipeline.encoder import Encoder
    from service.pipeline.head import configured_head
    from service.pipeline.pipeline import Pipeline

    head = configured_head(config)
    return Pipeline(Encoder(facenet, config.model.normalization, config.model.batch_size,
                            config.model.flip, head), detector, config)


@pytest.fixture(scope="session")
def one_face_crops(pipeline):
    """``crops(photos)``: the aligned face of each photo that shows exactly one (a second face may be
    anybody), and each one's person (its folder's name)."""
    def crops(photos):
        found, people = [], []
        for photo in photos:
            faces = pipeline.locate(photo).faces
            if len(faces) == 1:
                found.append(faces[0].crop)
                people.append(photo.parent.name)
        return found, people

    return crops


@pytest.fixture
def make_core(config, pipeline):
    """Application cores on the shared pipeline, each with its own data home; closed after the test."""
    from dataclasses import replace

    from service.app import Facerec

    made = []

    def make(home=None, pipeline=pipeline, **changes):
        """``changes``: Config fields, e.g. ``database_url`` (the session config's is SQLite's default);
        ``pipeline``: another one than the session's."""
        core = Facerec(replace(config, **({"home": home} if home else {}), **changes), pipeline=pipeline)
        made.append(core)
        return core

    yield make
    for core in made:
        core.close()


# ---- databases: every roster test runs on SQLite and on a real PostgreSQL server ------------------

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server of the session's own (skips, saying why, where there are no binaries)."""
    from postgres import PostgresServer, server_binaries

    folder, why = server_binaries()
    if folder is None:
        pytest.skip(why)
    server = PostgresServer.start()
    yield server
    server.stop()


def _database_url(backend: str, request) -> str:
    """'' (a SQLite file in the data home) or a fresh PostgreSQL database."""
    if backend == "sqlite":
        return ""
    return request.getfixturevalue("postgres_server").new_database()


@pytest.fixture(params=BACKENDS)
def database_url(request, monkeypatch) -> str:
    """A fresh roster database for one test, also in FACEREC_DATABASE_URL (so the CLI and every
    process the test starts use it)."""
    url = _database_url(request.param, request)
    monkeypatch.setenv("FACEREC_DATABASE_URL", url)
    return url


@pytest.fixture(scope="module", params=BACKENDS)
def module_database_url(request) -> str:
    """As ``database_url``, shared by a module's tests (its module-scoped fixtures build on it)."""
    url = _database_url(request.param, request)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FACEREC_DATABASE_URL", url)
        yield url
