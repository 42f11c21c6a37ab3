"""config.yaml, FACEREC_* overrides and validation."""


import pytest
import yaml

from service.config import PROJECT_ROOT, load_config
from service.errors import ConfigError


@pytest.fixture
def config_file(tmp_path):
    """A copy of the project's config.yaml in another folder."""
    path = tmp_path / "conf" / "facerec.yaml"
    path.parent.mkdir()
    path.write_text((PROJECT_ROOT / "config.yaml").read_text())
    return path


def test_relative_paths_resolve_against_the_config_folder(config_file):
    config = load_config(config_file, env={})
    assert config.home == config_file.parent / "var"
    assert config.database == f"sqlite:///{config_file.parent / 'var' / 'facerec.db'}"


def test_environment_overrides_nested_keys_with_yaml_types(config_file, tmp_path):
    env = {"FACEREC_HOME": str(tmp_path / "elsewhere"), "FACEREC_DETECTION__MIN_CONFIDENCE": "0.95",
           "FACEREC_DETECT": "false", "FACEREC_INDEX__K": "7", "PATH": "/usr/bin"}
    config = load_config(config_file, env=env)
    assert config.home == tmp_path / "elsewhere"
    assert config.detection.min_confidence == 0.95 and config.detect is False and config.index_k == 7


def test_explicit_overrides_win_over_the_environment(config_file):
    config = load_config(config_file, env={"FACEREC_THRESHOLD": "0.6"}, threshold=0.8)
    assert config.threshold == 0.8


@pytest.mark.parametrize("change, message", [
    ({"threshold": 2.5}, "threshold"),
    ({"colour": "blue"}, "unknown settings"),
    ({"model": {"normalization": "zscore"}}, "normalization"),
    ({"model": {"precision": "fp16"}}, "model.precision must be"),
    ({"model": {"precision": "bf16", "runtime": "tensorflow"}}, "needs model.runtime 'openvino'"),
    ({"model": {"precision": "int8", "runtime": "tensorflow"}}, "needs model.runtime 'openvino'"),
])
def test_bad_settings_are_refused_with_a_clear_message(config_file, change, message):
    raw = yaml.safe_load(config_file.read_text())
    for key, value in change.items():
        raw[key] = {**raw[key], **value} if isinstance(value, dict) else value
    config_file.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=message):
        load_config(config_file, env={})


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.yaml", env={})


def test_index_kind_defaults_to_flat_and_the_environment_can_switch_it(config_file):
    config = load_config(config_file, env={})
    assert config.index.kind == "flat" and config.index.huge_pages is True
    assert (config.index.hnsw.m, config.index.hnsw.ef_construction, config.index.hnsw.ef_search) == (48, 80, 512)
    config = load_config(config_file, env={"FACEREC_INDEX__KIND": "hnsw", "FACEREC_INDEX__HNSW__EF_SEARCH": "1000"})
    assert config.index.kind == "hnsw" and config.index.hnsw.ef_search == 1000 and config.index.hnsw.m == 48


def test_index_section_may_name_only_k(config_file):
    raw = yaml.safe_load(config_file.read_text())
    raw["index"] = {"k": 20}  # a config from before kinds existed
    config_file.write_text(yaml.safe_dump(raw))
    config = load_config(config_file, env={})
    assert config.index_k == 20 and config.index.kind == "flat" and config.index.hnsw.m == 48


@pytest.mark.parametrize("index, message", [
    ({"kind": "ivf"}, r"index.kind must be one of flat, hnsw, not 'ivf'"),
    ({"kind": "HNSW"}, r"index.kind must be one of flat, hnsw, not 'HNSW'"),
    ({"hnsw": {"m": 1}}, r"index.hnsw.m must be a whole number from 2 to 256, not 1"),
    ({"hnsw": {"m": 32.5}}, r"index.hnsw.m must be a whole number from 2 to 256, not 32.5"),
    ({"hnsw": {"ef_search": "many"}}, r"index.hnsw.ef_search must be a whole number .* not 'many'"),
    ({"hnsw": {"ef_construction": 0}}, r"index.hnsw.ef_construction must be a whole number from 1"),
    ({"hnsw": {"ef_search": True}}, r"index.hnsw.ef_search must be a whole number"),
    ({"hnsw": {"efsearch": 100}}, r"unknown settings \['index.hnsw.efsearch'\]"),
    ({"hnsw": [48]}, r"index.hnsw must be a section of settings"),
    ({"nprobe": 8}, r"unknown settings \['index.nprobe'\]"),
    ({"huge_pages": "yes"}, r"index.huge_pages must be true or false, not 'yes'"),
], ids=["unknown-kind", "kind-case", "m-small", "m-fraction", "ef-text", "efc-zero", "ef-bool", "hnsw-typo",
        "hnsw-list", "index-typo", "huge-pages-text"])
def test_bad_index_settings_are_refused_naming_the_setting(config_file, index, message):
    raw = yaml.safe_load(config_file.read_text())
    raw["index"] = {**raw["index"], **index}
    config_file.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=message):
        load_config(config_file, env={})


def test_int8_calibrates_with_the_shipped_detection_settings():
    """int8's calibration keeps its own copy of them, so a site's changes do not change the network."""
    from service.pipeline.pipeline import CALIBRATION_DETECTION

    assert load_config(PROJECT_ROOT / "config.yaml", env={}).detection == CALIBRATION_DETECTION
