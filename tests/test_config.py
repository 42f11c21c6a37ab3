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
