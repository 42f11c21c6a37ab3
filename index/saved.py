"""A saved index: the FAISS file and its manifest, written atomically and checked when read.

A saved index is a cache of the database, so every reason it cannot be used is an
:class:`IndexLoadError`, and the answer to all of them is to rebuild.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import tempfile
import time
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, BinaryIO, get_type_hints

import faiss

from index.kinds import KINDS, IndexSpec, IndexSpecError, spec_of

FORMAT_VERSION = 1
INDEX_FILE = "faces.faiss"
MANIFEST_FILE = "manifest.json"

_HASH_BLOCK = 1 << 20


# --- errors -------------------------------------------------------------------------------------


class IndexLoadError(Exception):
    """A saved index cannot be used as it is; the caller rebuilds it from the database."""

    def __init__(self, directory: Path | str, problem: str):
        self.directory = Path(directory)
        self.problem = problem
        super().__init__(f"saved face index in {self.directory}: {problem}; "
                         "it will be rebuilt from the database")


class IndexMissing(IndexLoadError):
    """No manifest or no index file: nothing was saved yet, or it was deleted."""


class IndexCorrupt(IndexLoadError):
    """The files exist but do not hold what the manifest says (or the manifest is unreadable)."""


class IndexStale(IndexLoadError):
    """A sound index, but for another model, generation or file format."""


# --- manifest -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Manifest:
    """What ``manifest.json`` says about the index file beside it."""

    format_version: int
    model_id: str
    dim: int
    count: int
    generation: int
    sha256: str
    created_at: str
    faiss_version: str
    # The caller's label of what the ids refer to (facerec: the roster's epoch). Optional: older
    # manifests lack it and read as "".
    epoch: str = ""
    # The kind of index and the parameters it was built with (index.kinds); older manifests are flat.
    # ``count`` is the live faces: an hnsw file also holds removed faces' nodes.
    kind: str = "flat"
    params: dict = field(default_factory=dict)


def _manifest_types() -> dict[str, type]:
    return get_type_hints(Manifest)


def read_manifest(directory: Path) -> Manifest:
    """The manifest in ``directory``; :class:`IndexMissing` or :class:`IndexCorrupt` if unusable."""
    path = Path(directory) / MANIFEST_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise IndexMissing(directory, f"no {MANIFEST_FILE}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise IndexCorrupt(directory, f"cannot read {MANIFEST_FILE} ({exc})") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise IndexCorrupt(directory, f"{MANIFEST_FILE} is not valid JSON ({exc})") from exc
    return _manifest_from_json(directory, data)


def _manifest_from_json(directory: Path, data: Any) -> Manifest:
    """Check every field's presence and type; keys this version does not know are ignored."""
    if not isinstance(data, dict):
        raise IndexCorrupt(directory, f"{MANIFEST_FILE} is not a JSON object")
    values = {}
    optional = {f.name for f in fields(Manifest) if f.default is not MISSING or f.default_factory is not MISSING}
    for name, kind in _manifest_types().items():
        if name in optional and name not in data:
            continue
        value = data.get(name)
        # bool is an int to Python, but never a valid count or version here.
        if not isinstance(value, kind) or isinstance(value, bool):
            raise IndexCorrupt(directory, f"{MANIFEST_FILE} has no valid {name!r} (found {value!r})")
        values[name] = value
    return Manifest(**values)


# --- persistence --------------------------------------------------------------------------------


def temporary_path(directory: Path, name: str, registry: list[Path]) -> Path:
    """A fresh file beside ``name`` (same filesystem, so os.replace is atomic), remembered in registry.

    Its name says who writes it, ``.<name>.<pid>@<host>.<random>.tmp``, so that a later start can tell
    a temporary a killed save left behind from one a running save is still writing
    (:func:`remove_abandoned_temporaries`).
    """
    fd, path = tempfile.mkstemp(dir=directory, prefix=f".{name}.{os.getpid()}@{_host()}.", suffix=".tmp")
    os.close(fd)
    registry.append(Path(path))
    return Path(path)


TEMPORARY_PATTERN = ".*.tmp"
_WRITER = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)@(?P<host>[A-Za-z0-9-]*)\.[A-Za-z0-9_]+\.tmp$")


def _host() -> str:
    """This machine's name as a temporary's name carries it (no dots: they separate the parts)."""
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:64]


def remove_abandoned_temporaries(directory: Path, max_age: float) -> list[Path]:
    """Remove the temporaries that interrupted saves left in ``directory``; the files removed.

    Several processes may save into one folder (a command and a server sharing a data home), so a
    temporary is removed only when its writer is known to be gone: the name says it was written on
    this host by a process id that no longer runs. Where that cannot be known (another host sharing
    the folder, a name from an older version, a pid since reused by an unrelated process), a file
    unmodified for ``max_age`` seconds is taken to be abandoned: a live save writes its temporaries
    in seconds and renames them at once.
    """
    removed = []
    for path in Path(directory).glob(TEMPORARY_PATTERN):
        try:
            if _writer_gone(path.name) or time.time() - path.stat().st_mtime > max_age:
                path.unlink()
                removed.append(path)
        except FileNotFoundError:  # renamed or removed by its writer meanwhile
            pass
    return removed


def _writer_gone(name: str) -> bool:
    """Whether the name says a process of this host wrote it, and that process has ended."""
    writer = _WRITER.match(name)
    if writer is None or writer["host"] != _host():
        return False
    pid = int(writer["pid"])
    if pid <= 0 or pid == os.getpid():  # 0 would signal our own process group; our own saves are live
        return False
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except OSError:  # e.g. PermissionError: it exists, as another user
        return False
    return False


def write_index(index: faiss.Index, path: Path) -> str:
    """Serialise ``index`` to ``path``, fsync it, and return its sha256, in one pass over the bytes."""
    digest = hashlib.sha256()
    with open(path, "wb") as file:
        def write(block: bytes) -> int:
            digest.update(block)
            return file.write(block)

        faiss.write_index(index, faiss.PyCallbackIOWriter(write))
        file.flush()
        os.fsync(file.fileno())
    return digest.hexdigest()


def write_durably(path: Path, data: bytes) -> None:
    with open(path, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())


def fsync_directory(directory: Path) -> None:
    """Make the renames themselves durable (POSIX; a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def check_current(directory: Path, manifest: Manifest, model_id: str, generation: int | None,
                  epoch: str | None = None, spec: IndexSpec | None = None) -> None:
    """IndexStale unless the manifest is this format, this model and (if given) this generation, epoch
    and kind of index with these build parameters."""
    if manifest.format_version != FORMAT_VERSION:
        raise IndexStale(directory, f"file format version {manifest.format_version}, "
                                    f"this code reads version {FORMAT_VERSION}")
    if manifest.model_id != model_id:
        raise IndexStale(directory, f"built for model {manifest.model_id!r}, the current model is {model_id!r}")
    if generation is not None and manifest.generation != generation:
        raise IndexStale(directory, f"saved at generation {manifest.generation}, "
                                    f"the database is at generation {generation}")
    if epoch is not None and manifest.epoch != epoch:
        raise IndexStale(directory, f"built for epoch {manifest.epoch or 'none'!r}, the ids now belong to epoch {epoch!r}")
    if spec is not None and (manifest.kind, manifest.params) != (spec.kind, spec.build_params):
        saved = ", ".join(f"{k}={v}" for k, v in manifest.params.items())
        raise IndexStale(directory, f"built as {manifest.kind}{f' ({saved})' if saved else ''}, "
                                    f"the configuration asks for {spec.describe()}")


def manifest_spec(directory: Path, manifest: Manifest, search: IndexSpec | None = None) -> IndexSpec:
    """The spec the manifest records (search-time settings from ``search``); IndexCorrupt if it names
    no kind or parameters this version can build."""
    if manifest.kind not in KINDS:
        raise IndexCorrupt(directory, f"{MANIFEST_FILE} names an unknown index kind {manifest.kind!r}")
    try:
        return spec_of(manifest.kind, manifest.params, search)
    except (TypeError, ValueError, IndexSpecError) as exc:
        raise IndexCorrupt(directory, f"{MANIFEST_FILE} has unusable {manifest.kind} parameters ({exc})") from exc


def read_index(directory: Path, manifest: Manifest) -> faiss.Index:
    """The FAISS index file, checked against the manifest's checksum and dim (its kind's structure and
    count are checked by ``index.kinds``)."""
    path = directory / INDEX_FILE
    try:
        file = open(path, "rb")
    except FileNotFoundError:
        raise IndexMissing(directory, f"{MANIFEST_FILE} is there but {INDEX_FILE} is not") from None
    except OSError as exc:
        raise IndexCorrupt(directory, f"cannot open {INDEX_FILE} ({exc})") from exc
    with file:
        # The checksum is verified before FAISS parses anything, so a damaged header cannot make it
        # allocate nonsense; reading through the same open file means a concurrent save cannot swap
        # the bytes between the check and the parse.
        digest = _sha256_of(file)
        if digest != manifest.sha256:
            raise IndexCorrupt(directory, f"{INDEX_FILE} has sha256 {digest[:12]}..., the manifest "
                                          f"says {manifest.sha256[:12]}... (changed or half-written)")
        file.seek(0)
        try:
            raw = faiss.read_index(faiss.PyCallbackIOReader(file.read))
        except RuntimeError as exc:
            raise IndexCorrupt(directory, f"FAISS cannot read {INDEX_FILE} ({_first_line(exc)})") from exc
    if raw.d != manifest.dim:
        raise IndexCorrupt(directory, f"{INDEX_FILE} has dim {raw.d}, the manifest says {manifest.dim}")
    return raw


def _sha256_of(file: BinaryIO) -> str:
    digest = hashlib.sha256()
    while block := file.read(_HASH_BLOCK):
        digest.update(block)
    return digest.hexdigest()


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
