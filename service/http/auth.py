"""API keys (``X-API-Key``) with roles: ``admin`` for people and faces, ``client`` for decisions.

Keys come from the configuration (config.yaml ``auth.keys`` and FACEREC_API_KEYS, in the clear) and
from the keys file (hashes only, :mod:`service.http.keys`). Every request checks whether the keys file
changed (one ``stat``) and rereads it if so, so a key added or revoked with ``facerec keys`` counts in
every worker from its next request. Keys are compared in constant time against every key, and only a
non-secret key id (role plus 8 hex characters of the key's sha256) is ever logged or audited.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from flask import g, request

from service.config import AuthConfig
from service.errors import ConfigError
from service.http import keys as keys_file
from service.http.errors import ApiError

log = logging.getLogger(__name__)
HEADER = "X-API-Key"
ANONYMOUS = "anonymous"  # the key id recorded when auth is disabled
_UNREAD = object()  # the file's signature before the first read: equal to nothing


@dataclass(frozen=True)
class ApiKey:
    role: str
    digest: bytes  # sha256 of the key: equal length for every key, so comparison time says nothing
    key_id: str


def key_id(role: str, key: str) -> str:
    """What logs and the audit show for a key: never the key itself."""
    return keys_file.key_id(role, keys_file.digest_hex(key))


def parse_keys(auth: AuthConfig) -> list[ApiKey]:
    """The configuration's keys (config.yaml and FACEREC_API_KEYS), hashed for comparison."""
    keys = []
    for entry in auth.keys:
        role, _, key = entry.partition(":")
        keys.append(ApiKey(role, hashlib.sha256(key.encode()).digest(), key_id(role, key)))
    return keys


def stored_keys(stored) -> tuple[ApiKey, ...]:
    """The keys file's entries, ready for comparison."""
    return tuple(ApiKey(k.role, bytes.fromhex(k.sha256), k.id) for k in stored)


def check_startable(auth: AuthConfig, host: str, announce=log.warning) -> None:
    """Refuse a server with no keys unless auth is explicitly disabled, and then only on loopback.

    Reads the keys file (converting plaintext keys to hashes): a malformed one refuses the start."""
    from service.config import LOOPBACK_HOSTS

    if auth.mode == "disabled":
        if host not in LOOPBACK_HOSTS:
            raise ConfigError(f"auth is disabled: the server binds to loopback only, not {host!r}")
        return
    stored = keys_file.KeysFile(auth.keys_file).load(announce) if auth.keys_file else ()
    if not auth.keys and not stored:
        raise ConfigError(f"no API keys configured (the keys file {auth.keys_file} holds none): run "
                          "`facerec keys init` or `facerec keys add --role admin`, set FACEREC_API_KEYS="
                          "\"admin:KEY1,client:KEY2\", or set auth.mode: disabled (loopback only)")


class Authenticator:
    """Checks the request's key against the configured ones and the roles a route allows."""

    def __init__(self, auth: AuthConfig):
        self.disabled = auth.mode == "disabled"
        self.fixed = tuple(parse_keys(auth))
        self.path: Path | None = None if self.disabled else auth.keys_file
        self._reload_lock = threading.Lock()
        self._seen: tuple[object, tuple[ApiKey, ...]] = (_UNREAD, ())  # (file signature, its keys)
        self.file_keys()  # read once now, so a worker says at start what it found

    def file_keys(self) -> tuple[ApiKey, ...]:
        """The keys file's keys as of now: one stat per call, a reread when the file changed."""
        if self.path is None:
            return ()
        seen, keys = self._seen
        now = self._signature()
        if now == seen:
            return keys
        with self._reload_lock:  # one thread rereads; the others wait for its result
            if self._seen[0] != now:
                self._seen = self._reload(now)
            return self._seen[1]

    def _signature(self) -> object:
        try:
            return keys_file.signature(self.path)
        except OSError as exc:  # e.g. the folder became unreadable: reread, which fails and says why
            return ("error", exc.errno)

    def _reload(self, now: object) -> tuple[object, tuple[ApiKey, ...]]:
        """Read the file; a file that cannot be used gives no keys (fail closed: a revocation written
        by hand with a typo must not leave the revoked key working), logged once per change."""
        try:
            snapshot = keys_file.read(self.path)
        except ConfigError as exc:
            log.error("%s: no key from that file is accepted until it is fixed", exc.message)
            return now, ()
        if snapshot.plaintext:
            log.warning("keys file %s holds %d plaintext key(s): accepted; `facerec keys list` converts "
                        "the file to hashes", self.path, snapshot.plaintext)
        if self._seen[0] is not _UNREAD or snapshot.keys:
            log.warning("keys file %s read: %d key(s)", self.path, len(snapshot.keys))
        return snapshot.signature, stored_keys(snapshot.keys)

    def identify(self, presented: str | None) -> ApiKey | None:
        if not presented:
            return None
        digest = hashlib.sha256(presented.encode()).digest()
        found = None
        for key in self.fixed + self.file_keys():  # no early exit: the time taken does not depend on which key matched
            if hmac.compare_digest(digest, key.digest):
                found = key
        return found

    def require(self, *roles: str) -> None:
        """Record the caller's key id and role in ``g``; 401 without a valid key, 403 for a wrong role."""
        if self.disabled:
            g.key_id, g.role = ANONYMOUS, "admin"
            return
        key = self.identify(request.headers.get(HEADER))
        if key is None:
            g.key_id = g.role = None
            raise ApiError(401, "unauthorized", f"a valid API key is required in the {HEADER} header")
        g.key_id, g.role = key.key_id, key.role
        if key.role not in roles:
            raise ApiError(403, "forbidden", f"this key's role ({key.role}) may not use this endpoint")
