"""The keys file (``<home>/api-keys.yaml``): API keys at rest, as hashes only.

Each entry is a key's role, its non-secret id (``role:`` plus the first 8 hex characters of the key's
sha256, the id logs and the audit have always shown), a label, when it was made and the key's sha256;
never the key. ``facerec keys init | add | revoke`` change the file under a lock file, writing a
temporary file and renaming it over the old one, so a reader (every server worker rereads the file
when it changes) sees the old file or the new one, never half of one.

A file in the earlier form, plaintext ``role:key`` strings, is still read (converted in memory), and
converted in place by the first ``keys`` command or ``serve`` that reads it.

Why a plain sha256, not scrypt or an HMAC: the keys this service makes are 256-bit random tokens
(``secrets.token_urlsafe(32)``). A slow hash makes guessing a low-entropy password expensive; guessing
one of 2**256 tokens is out of reach at any hash speed, so a slow hash would only add its cost to every
request (each request hashes the key it presents) and an HMAC would add a secret to keep, for no gain.
What the hash buys is that a copied file (a backup, a replica's copy) holds nothing that opens the API.
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from hashlib import sha256
from pathlib import Path
from typing import Callable, Iterator

import yaml

from service.config import API_ROLES
from service.errors import ConfigError, FacerecError, UnknownKey

Announce = Callable[[str], None]
LOCK_TIMEOUT = 10.0  # seconds a command waits for another one to finish changing the file
NAME_MAX = 64
MIGRATED_NAME = "migrated"
HEADER = ("# facerec API keys: each key's sha256 only, never the key itself. Managed with\n"
          "# `facerec keys add | list | revoke`; a running server rereads this file when it changes.\n")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
KEY_ID = re.compile(rf"^({'|'.join(API_ROLES)}):[0-9a-f]{{8}}$")
_FIELDS = {"id", "role", "name", "created", "sha256"}
# libyaml's safe loader where PyYAML has it: each worker rereads the file after every change.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def digest_hex(key: str) -> str:
    return sha256(key.encode()).hexdigest()


def key_id(role: str, digest: str) -> str:
    """What logs, the audit and ``keys list`` show for a key: its role and 8 hex of its hash."""
    return f"{role}:{digest[:8]}"


def check_name(name: str) -> str:
    """A key's label: one line of printable text, at most NAME_MAX characters."""
    name = name.strip()
    if len(name) > NAME_MAX or not name.isprintable():
        raise FacerecError(f"a key's name is one line of at most {NAME_MAX} printable characters")
    return name


def now_text() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class StoredKey:
    """One entry of the keys file."""

    id: str
    role: str
    name: str
    created: str
    sha256: str  # hex; the only trace of the key

    @classmethod
    def of(cls, role: str, key: str, name: str, created: str) -> "StoredKey":
        digest = digest_hex(key)
        return cls(key_id(role, digest), role, name, created, digest)

    def public(self) -> dict:
        """What may be shown: everything but the hash."""
        return {"id": self.id, "role": self.role, "name": self.name, "created": self.created}

    def to_yaml(self) -> dict:
        return {**self.public(), "sha256": self.sha256}


@dataclass(frozen=True)
class Snapshot:
    """One read of the keys file: its keys, how many were plaintext, and the file's identity then."""

    keys: tuple[StoredKey, ...] = ()
    plaintext: int = 0
    signature: tuple | None = None  # None: no file


def signature(path: Path) -> tuple | None:
    """What changes whenever the file is replaced or edited (a rename gives it a new inode): cheap
    enough to check on every request. None when there is no file; other OSErrors propagate."""
    try:
        return _signature(os.stat(path))
    except FileNotFoundError:
        return None


def _signature(st: os.stat_result) -> tuple:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def read(path: Path) -> Snapshot:
    """Parse the keys file (missing: no keys); ConfigError naming the file if it cannot be used."""
    try:
        with open(path, "rb") as file:
            # The signature of the very file read, so a replacement in between is seen next time.
            stat = os.fstat(file.fileno())
            data = file.read()
    except FileNotFoundError:
        return Snapshot()
    except OSError as exc:
        raise ConfigError(f"keys file {path} cannot be read: {exc.strerror}") from None
    created = datetime.fromtimestamp(stat.st_mtime, timezone.utc).replace(microsecond=0)
    keys, plaintext = parse(data, path, created.isoformat().replace("+00:00", "Z"))
    return Snapshot(tuple(keys), plaintext, _signature(stat))


def parse(data: bytes, path: Path, file_time: str) -> tuple[list[StoredKey], int]:
    """The file's keys, plaintext entries hashed (dated ``file_time``), and how many were plaintext.

    Messages name the file and the entry's position, never an entry's text: it may be a key."""
    try:
        raw = yaml.load(data.decode("utf-8"), Loader=_LOADER)
    except UnicodeDecodeError:
        raise ConfigError(f"keys file {path} is not UTF-8 text") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "cannot be parsed"
        raise ConfigError(f"keys file {path} is not valid YAML{where}: {problem}") from None
    if raw is None:
        return [], 0
    if not isinstance(raw, dict) or set(raw) - {"keys"} or not isinstance(raw.get("keys") or [], list):
        raise ConfigError(f"keys file {path} must be a YAML mapping with one entry, 'keys', a list")
    keys, plaintext = [], 0
    for number, entry in enumerate(raw.get("keys") or [], 1):
        if isinstance(entry, str):
            keys.append(_plaintext_entry(entry, path, number, file_time))
            plaintext += 1
        elif isinstance(entry, dict):
            keys.append(_hashed_entry(entry, path, number))
        else:
            raise ConfigError(f"keys file {path}: entry {number} is neither a mapping (id, role, name, created, "
                              f"sha256) nor an old 'role:key' string")
    return keys, plaintext


def _plaintext_entry(entry: str, path: Path, number: int, file_time: str) -> StoredKey:
    role, _, key = entry.partition(":")
    if role not in API_ROLES or not key:
        # Not even the role part is echoed: in an entry without a colon, it is the key.
        raise ConfigError(f"keys file {path}: entry {number} is not 'role:key' with role one of {API_ROLES}")
    return StoredKey.of(role, key, MIGRATED_NAME, file_time)


def _hashed_entry(entry: dict, path: Path, number: int) -> StoredKey:
    where = f"keys file {path}: entry {number}"
    if set(entry) - _FIELDS or not {"id", "role", "sha256"} <= set(entry):
        raise ConfigError(f"{where} must have id, role and sha256 (and may have name and created), "
                          f"not {sorted(map(str, entry))}")
    role, digest = entry["role"], entry["sha256"]
    if role not in API_ROLES:
        raise ConfigError(f"{where} has an unknown role {str(role)[:16]!r}: one of {API_ROLES}")
    if not isinstance(digest, str) or not _HEX64.match(digest):
        raise ConfigError(f"{where}: sha256 must be 64 lowercase hex characters")
    if entry["id"] != key_id(role, digest):
        raise ConfigError(f"{where}: id {str(entry['id'])[:32]!r} is not its role and the first 8 characters "
                          f"of its sha256 ({key_id(role, digest)!r})")
    created = entry.get("created") or ""
    if isinstance(created, datetime):  # written unquoted by hand: YAML reads a timestamp
        created = created.isoformat()
    return StoredKey(entry["id"], role, str(entry.get("name") or ""), str(created), digest)


class UnwritableKeysFile(ConfigError):
    """The keys file, its folder or its lock file cannot be written."""


class KeysFile:
    """Changes to one keys file: atomic, and one command at a time (a lock file beside it)."""

    def __init__(self, path: Path, lock_timeout: float = LOCK_TIMEOUT):
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.lock_timeout = lock_timeout

    def load(self, announce: Announce) -> tuple[StoredKey, ...]:
        """The stored keys; a file holding plaintext keys is converted to hashes first (if it cannot
        be, say on a read-only disk, that is announced and its keys are used as they are)."""
        snapshot = read(self.path)
        if not snapshot.plaintext:
            return snapshot.keys
        try:
            with self._editing(announce) as keys:
                return tuple(keys)
        except UnwritableKeysFile as exc:
            announce(f"{exc.message}: its plaintext keys are accepted but stay in the clear")
            return snapshot.keys

    def init(self, announce: Announce) -> list[tuple[StoredKey, str]] | None:
        """Make an admin and a client key if the file holds none; (entry, key) pairs, or None."""
        with self._editing(announce) as keys:
            if keys:
                return None
            made = [self._new(role, "init", keys) for role in ("admin", "client")]
            keys.extend(entry for entry, _ in made)
            return made

    def add(self, role: str, name: str, announce: Announce) -> tuple[StoredKey, str]:
        """A new key of ``role``: its entry (now in the file) and the key, which is nowhere else."""
        if role not in API_ROLES:
            raise ConfigError(f"unknown role {role!r}: one of {API_ROLES}")
        name = check_name(name)
        with self._editing(announce) as keys:
            entry, key = self._new(role, name, keys)
            keys.append(entry)
            return entry, key

    def revoke(self, wanted: str, announce: Announce) -> tuple[StoredKey, tuple[StoredKey, ...]]:
        """Remove the key with id ``wanted``: (its entry, the keys left). UnknownKey if there is none."""
        with self._editing(announce) as keys:
            gone = [k for k in keys if k.id == wanted]
            if not gone:
                raise UnknownKey(f"no key {wanted} in the keys file {self.path} (see `facerec keys list`)")
            keys[:] = [k for k in keys if k.id != wanted]
            return gone[0], tuple(keys)

    @staticmethod
    def _new(role: str, name: str, keys: list[StoredKey]) -> tuple[StoredKey, str]:
        taken = {k.id for k in keys}
        while True:  # ids are 32 bits of the hash: make another key in the rare case two would share one
            key = secrets.token_urlsafe(32)
            entry = StoredKey.of(role, key, name, now_text())
            if entry.id not in taken:
                return entry, key

    @contextmanager
    def _editing(self, announce: Announce) -> Iterator[list[StoredKey]]:
        """Under the lock: the file's keys as a list to change; written back if changed. A file with
        plaintext keys is converted (and written) before anything else, whatever the caller does."""
        try:
            with self._locked():
                snapshot = read(self.path)
                if snapshot.plaintext:
                    self._write(snapshot.keys)
                    announce(f"converted the keys file {self.path}: its {snapshot.plaintext} plaintext key(s) are "
                             f"now stored as sha256 hashes (the keys themselves still work; older copies of the "
                             f"file, such as backups, still hold them in the clear)")
                keys = list(snapshot.keys)
                yield keys
                if keys != list(snapshot.keys):
                    self._write(keys)
        except OSError as exc:  # the folder, the disk, the lock file: a clear message, not a traceback
            raise UnwritableKeysFile(f"cannot change the keys file {self.path}: {exc.strerror or exc}") from None

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """An exclusive flock on the lock file; a clear error, not a hang, if it stays taken."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            deadline = time.monotonic() + self.lock_timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise ConfigError(f"the keys file {self.path} is being changed by another command "
                                          f"(it holds {self.lock_path}); try again") from None
                    time.sleep(0.05)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _write(self, keys) -> None:
        """Temporary file (mode 0600: mkstemp's), fsync, rename over the file: all or nothing."""
        text = HEADER + yaml.safe_dump({"keys": [k.to_yaml() for k in keys]}, sort_keys=False,
                                       default_flow_style=False, allow_unicode=True)
        fd, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself survives a crash
        finally:
            os.close(directory)
