"""Configuration: config.yaml, overridden by FACEREC_* environment variables, passed in explicitly.

Nothing else in the project reads config files or the environment; it receives a :class:`Config`.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from service.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ENV_PREFIX = "FACEREC_"
API_KEYS_ENV = f"{ENV_PREFIX}API_KEYS"  # "role:key,role:key": a list, so not a generic YAML override
API_ROLES = ("admin", "client")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
PRECISIONS = ("fp32", "bf16", "int8")  # model.precision; exact first


@dataclass(frozen=True)
class ModelConfig:
    weights: Path
    cache_dir: Path
    normalization: str
    batch_size: int
    flip: bool
    # Which runtime executes the network ("openvino" or "tensorflow") and its threads (0: one per core).
    runtime: str = "openvino"
    threads: int = 0
    # "fp32" (exact), "bf16" (OpenVINO on a CPU with bfloat16 units) or "int8" (OpenVINO, quantised by
    # NNCF at conversion): faster, encodings within ~0.03 and ~0.26 of fp32's.
    precision: str = "fp32"
    # A head trained by `facerec train` applied to every encoding (its folder or head.npz), or None.
    head: Path | None = None

    @property
    def celebrity_photos(self) -> Path:
        """The 5-celebrity photos that set-up fetches beside the weights (the demo's scene, int8's calibration)."""
        return self.weights.parent / "data" / "5-celebrity"


@dataclass(frozen=True)
class DetectionConfig:
    max_side: int
    min_face: int
    min_confidence: float
    margin: float


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    threads: int = 8
    max_upload_mb: float = 10.0
    request_timeout: float = 30.0


@dataclass(frozen=True)
class AuthConfig:
    mode: str = "keys"  # "keys" or "disabled" (loopback only)
    # "role:key" entries from config.yaml and FACEREC_API_KEYS, in the clear by nature (the operator's
    # secret store); never printed.
    keys: tuple[str, ...] = field(default=(), repr=False)
    # Hashed keys, managed by `facerec keys ...`: read by service.http.keys (a server rereads it when it
    # changes), not here, so a bad keys file troubles only the commands that use keys.
    keys_file: Path | None = None


@dataclass(frozen=True)
class AuditConfig:
    # Decisions older than this many days are deleted by `facerec audit purge`.
    retention_days: int = 90
    # Deleting a person also deletes the recorded decisions that name them (not this host's audit.log).
    erase_on_delete: bool = False


@dataclass(frozen=True)
class HnswConfig:
    # index.kinds.IndexSpec's parameters, under the names config.yaml gives them.
    m: int = 48
    ef_construction: int = 80
    ef_search: int = 512


@dataclass(frozen=True)
class IndexConfig:
    kind: str = "flat"  # "flat" (exact) or "hnsw" (approximate, exact distances)
    hnsw: HnswConfig = HnswConfig()
    huge_pages: bool = True  # back the index with 2 MB pages where Linux allows (index.pages)


INDEX_KINDS = ("flat", "hnsw")  # index.kinds.KINDS, spelt out: importing it would load FAISS


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
    server: ServerConfig = ServerConfig()
    auth: AuthConfig = AuthConfig()
    audit: AuditConfig = AuditConfig()
    index: IndexConfig = IndexConfig()

    @property
    def database(self) -> str:
        """The SQLAlchemy URL of the roster database (a SQLite file in ``home`` unless configured)."""
        return self.database_url or f"sqlite:///{self.home / 'facerec.db'}"

    @property
    def index_dir(self) -> Path:
        return self.home / "index"

    @property
    def audit_log(self) -> Path:
        """The local JSON-lines copy of the audit, for log shippers."""
        return self.home / "audit.log"

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
        if key.startswith(ENV_PREFIX) and key not in (f"{ENV_PREFIX}CONFIG", API_KEYS_ENV):
            _set(raw, key[len(ENV_PREFIX):].lower(), yaml.safe_load(value))
    for key, value in overrides.items():
        _set(raw, key, value)
    env_keys = [k.strip() for k in env.get(API_KEYS_ENV, "").split(",") if k.strip()]
    return _build(raw, base=path.resolve().parent, source=path, env_keys=env_keys)


def _optional_path(value: Any, base: Path) -> Path | None:
    return _path(value, base) if value not in (None, "") else None


def _set(tree: dict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split("__")
    for part in parents:
        tree = tree.setdefault(part, {})
        if not isinstance(tree, dict):
            raise ConfigError(f"cannot set {dotted}: {part} is not a section")
    tree[leaf] = value


def _build(raw: dict, base: Path, source: Path, env_keys: list[str] | None = None) -> Config:
    raw = copy.deepcopy(raw)
    try:
        model, det, index = raw.pop("model"), raw.pop("detection"), raw.pop("index")
        home = _path(raw.pop("home"), base)
        config = Config(
            home=home,
            threshold=float(raw.pop("threshold")),
            database_url=str(raw.pop("database_url") or ""),
            index_k=int(index.pop("k")),
            model=ModelConfig(
                weights=_path(model.pop("weights"), base),
                cache_dir=_path(model.pop("cache_dir"), base),
                normalization=str(model.pop("normalization")),
                batch_size=int(model.pop("batch_size")),
                flip=bool(model.pop("flip")),
                runtime=str(model.pop("runtime", "openvino")),
                threads=int(model.pop("threads", 0)),
                precision=str(model.pop("precision", "fp32")),
                head=_optional_path(model.pop("head", None), base),
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
            server=_server(raw.pop("server", None) or {}),
            auth=_auth(raw.pop("auth", None) or {}, home, base, env_keys or []),
            audit=_audit(raw.pop("audit", None) or {}),
            index=_index(index),
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
    if config.model.runtime not in ("openvino", "tensorflow"):
        raise ConfigError(f"{source}: model.runtime must be 'openvino' or 'tensorflow'")
    if config.model.precision not in PRECISIONS:
        raise ConfigError(f"{source}: model.precision must be one of {', '.join(PRECISIONS)}")
    if config.model.precision != "fp32" and config.model.runtime != "openvino":
        raise ConfigError(f"{source}: model.precision {config.model.precision!r} needs model.runtime 'openvino'")
    if config.model.threads < 0:
        raise ConfigError(f"{source}: model.threads must be 0 (one per core) or more")
    if not 0 < config.threshold <= 2:
        raise ConfigError(f"{source}: threshold must be in (0, 2]: encodings are unit vectors, 2 apart at most")
    if config.model.batch_size < 1 or config.max_pixels < 1 or config.index_k < 1:
        raise ConfigError(f"{source}: model.batch_size, image.max_pixels and index.k must be positive")
    server = config.server
    if (server.workers < 1 or server.threads < 1 or server.max_upload_mb <= 0 or server.request_timeout <= 0
            or not 0 <= server.port < 65536):
        raise ConfigError(f"{source}: server.workers, server.threads, server.max_upload_mb, server.request_timeout "
                          "and server.port must be positive")
    if config.auth.mode not in ("keys", "disabled"):
        raise ConfigError(f"{source}: auth.mode must be 'keys' or 'disabled'")
    for entry in config.auth.keys:
        role, _, key = entry.partition(":")
        if role not in API_ROLES or not key:
            # The entry itself is a secret: name its position's role only.
            raise ConfigError(f"{source}: API keys are 'role:key' with role one of {API_ROLES}; "
                              f"got an entry with role {role[:16]!r}")


def _audit(raw: dict) -> AuditConfig:
    erase = raw.pop("erase_on_delete", AuditConfig.erase_on_delete)
    if not isinstance(erase, bool):
        raise ValueError(f"audit.erase_on_delete must be true or false, not {erase!r}")
    audit = AuditConfig(retention_days=int(raw.pop("retention_days", AuditConfig.retention_days)),
                        erase_on_delete=erase)
    if raw:
        raise ValueError(f"unknown settings {[f'audit.{k}' for k in raw]}")
    if audit.retention_days < 1:
        raise ValueError("audit.retention_days must be at least 1")
    return audit


def _index(raw: dict) -> IndexConfig:
    """index.kind, index.huge_pages and index.hnsw.*; pops what it reads from ``raw`` (the caller reports leftovers)."""
    kind = raw.pop("kind", IndexConfig.kind)
    if kind not in INDEX_KINDS:
        raise ValueError(f"index.kind must be one of {', '.join(INDEX_KINDS)}, not {kind!r}")
    hnsw = raw.pop("hnsw", None) or {}
    if not isinstance(hnsw, dict):
        raise ValueError(f"index.hnsw must be a section of settings, not {hnsw!r}")
    hnsw = dict(hnsw)
    defaults = HnswConfig()
    # Bounds: m links per face cost 8*m bytes each, and past a few hundred buy nothing; ef_search
    # below index.k is raised to it at every search, so any positive value is allowed.
    huge_pages = raw.pop("huge_pages", IndexConfig.huge_pages)
    if not isinstance(huge_pages, bool):
        raise ValueError(f"index.huge_pages must be true or false, not {huge_pages!r}")
    config = IndexConfig(kind=kind, huge_pages=huge_pages, hnsw=HnswConfig(
        m=_whole(hnsw.pop("m", defaults.m), "index.hnsw.m", 2, 256),
        ef_construction=_whole(hnsw.pop("ef_construction", defaults.ef_construction), "index.hnsw.ef_construction",
                               1, 4096),
        ef_search=_whole(hnsw.pop("ef_search", defaults.ef_search), "index.hnsw.ef_search", 1, 65536),
    ))
    if hnsw:
        raise ValueError(f"unknown settings {[f'index.hnsw.{k}' for k in hnsw]}")
    return config


def _whole(value: Any, name: str, low: int, high: int) -> int:
    """A whole number in [low, high]: no bool, fraction or text (32.5 must not quietly become 32)."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be a whole number from {low} to {high}, not {value!r}")
    return value


def _server(raw: dict) -> ServerConfig:
    defaults = ServerConfig()
    server = ServerConfig(
        host=str(raw.pop("host", defaults.host)),
        port=int(raw.pop("port", defaults.port)),
        workers=int(raw.pop("workers", defaults.workers)),
        threads=int(raw.pop("threads", defaults.threads)),
        max_upload_mb=float(raw.pop("max_upload_mb", defaults.max_upload_mb)),
        request_timeout=float(raw.pop("request_timeout", defaults.request_timeout)),
    )
    if raw:
        raise ValueError(f"unknown settings {[f'server.{k}' for k in raw]}")
    return server


def _auth(raw: dict, home: Path, base: Path, env_keys: list[str]) -> AuthConfig:
    """Keys from the config, then the environment; and where the keys file is (``<home>/api-keys.yaml``)."""
    keys_file = _path(raw.pop("keys_file"), base) if raw.get("keys_file") else home / "api-keys.yaml"
    raw.pop("keys_file", None)
    keys = [str(k) for k in raw.pop("keys", None) or []]
    auth = AuthConfig(mode=str(raw.pop("mode", "keys")), keys=tuple(keys + env_keys), keys_file=keys_file)
    if raw:
        raise ValueError(f"unknown settings {[f'auth.{k}' for k in raw]}")
    return auth


def _path(value: Any, base: Path) -> Path:
    path = Path(str(value)).expanduser()
    return path if path.is_absolute() else base / path

