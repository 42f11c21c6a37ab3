"""Configuration: config.yaml, overridden by FACEREC_* environment variables, passed in explicitly.

Nothing else in the project reads config files or the environment; it receives a :class:`Config`.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

from service.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ENV_PREFIX = "FACEREC_"


@dataclass(frozen=True)
class ModelConfig:
    weights: Path
    cache_dir: Path
    normalization: str
    batch_size: int
    flip: bool


@dataclass(frozen=True)
class DetectionConfig:
    max_side: int
    min_face: int
    min_confidence: float
    margin: float


@dataclass(frozen=True)
class Config:
    home: Path
    threshold: float
    database_url: str
    index_k: int
    model: ModelConfig
    detect: bool
    detection: DetectionConfig
    max_pixels: int
    source: Path | None = None

    @property
    def database(self) -> str:
        """The SQLAlchemy URL of the roster database (a SQLite file in ``home`` unless configured)."""
        return self.database_url or f"sqlite:///{self.home / 'facerec.db'}"

    @property
    def index_dir(self) -> Path:
        return self.home / "index"

    @property
    def crops_dir(self) -> Path:
        return self.home / "crops"

    @property
    def expected_sha256(self) -> str | None:
        """The weights' hash from models/manifest.json, when the weights are the shipped ones."""
        manifest = PROJECT_ROOT / "models" / "manifest.json"
        if manifest.is_file() and self.model.weights.name == "facenet_keras.h5":
            return json.loads(manifest.read_text())["sha256"]
        return None


def default_config_path() -> Path:
    """FACEREC_CONFIG if set, else the project's config.yaml."""
    return Path(os.environ.get(f"{ENV_PREFIX}CONFIG", PROJECT_ROOT / "config.yaml"))


def load_config(path: Path | None = None, env: Mapping[str, str] | None = None, **overrides: Any) -> Config:
    """Read ``path`` (default: :func:`default_config_path`), apply env overrides, then ``overrides``.

    ``overrides`` use the same nested keys joined by ``__`` as the environment (``detection__margin=0.3``).
    """
    path = Path(path) if path else default_config_path()
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    env = os.environ if env is None else env
    for key, value in env.items():
        if key.startswith(ENV_PREFIX) and key != f"{ENV_PREFIX}CONFIG":
            _set(raw, key[len(ENV_PREFIX):].lower(), yaml.safe_load(value))
    for key, value in overrides.items():
        _set(raw, key, value)
    return _build(raw, base=path.resolve().parent, source=path)


def _set(tree: dict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split("__")
    for part in parents:
        tree = tree.setdefault(part, {})
        if not isinstance(tree, dict):
            raise ConfigError(f"cannot set {dotted}: {part} is not a section")
    tree[leaf] = value


def _build(raw: dict, base: Path, source: Path) -> Config:
    raw = copy.deepcopy(raw)
    try:
        model, det, index = raw.pop("model"), raw.pop("detection"), raw.pop("index")
        config = Config(
            home=_path(raw.pop("home"), base),
            threshold=float(raw.pop("threshold")),
            database_url=str(raw.pop("database_url") or ""),
            index_k=int(index.pop("k")),
            model=ModelConfig(
                weights=_path(model.pop("weights"), base),
                cache_dir=_path(model.pop("cache_dir"), base),
                normalization=str(model.pop("normalization")),
                batch_size=int(model.pop("batch_size")),
                flip=bool(model.pop("flip")),
            ),
            detect=bool(raw.pop("detect")),
            detection=DetectionConfig(
                max_side=int(det.pop("max_side")),
                min_face=int(det.pop("min_face")),
                min_confidence=float(det.pop("min_confidence")),
                margin=float(det.pop("margin")),
            ),
            max_pixels=int(raw.pop("image").pop("max_pixels")),
            source=source,
        )
    except KeyError as exc:
        raise ConfigError(f"{source}: missing setting {exc}") from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(f"{source}: bad value: {exc}") from None
    leftovers = ([k for k in raw] + [f"model.{k}" for k in model] + [f"detection.{k}" for k in det]
                 + [f"index.{k}" for k in index])
    if leftovers:
        raise ConfigError(f"{source}: unknown settings {leftovers}")
    _validate(config, source)
    return config


def _validate(config: Config, source: Path) -> None:
    if config.model.normalization not in ("standardize", "divide255"):
        raise ConfigError(f"{source}: model.normalization must be 'standardize' or 'divide255'")
    if not 0 < config.threshold <= 2:
        raise ConfigError(f"{source}: threshold must be in (0, 2]: encodings are unit vectors, 2 apart at most")
    if config.model.batch_size < 1 or config.max_pixels < 1 or config.index_k < 1:
        raise ConfigError(f"{source}: model.batch_size, image.max_pixels and index.k must be positive")


def _path(value: Any, base: Path) -> Path:
    path = Path(str(value)).expanduser()
    return path if path.is_absolute() else base / path

