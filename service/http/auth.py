"""API keys (``X-API-Key``) with roles: ``admin`` for people and faces, ``client`` for decisions.

Keys are compared in constant time against every configured key, and only a non-secret key id
(role plus 8 hex characters of the key's sha256) is ever logged or audited.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from flask import g, request

from service.config import AuthConfig
from service.errors import ConfigError
from service.http.errors import ApiError

HEADER = "X-API-Key"
ANONYMOUS = "anonymous"  # the key id recorded when auth is disabled


@dataclass(frozen=True)
class ApiKey:
    role: str
    digest: bytes  # sha256 of the key: equal length for every key, so comparison time says nothing
    key_id: str


def key_id(role: str, key: str) -> str:
    """What logs and the audit show for a key: never the key itself."""
    return f"{role}:{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def parse_keys(auth: AuthConfig) -> list[ApiKey]:
    keys = []
    for entry in auth.keys:
        role, _, key = entry.partition(":")
        keys.append(ApiKey(role, hashlib.sha256(key.encode()).digest(), key_id(role, key)))
    return keys


def check_startable(auth: AuthConfig, host: str) -> None:
    """Refuse a server with no keys unless auth is explicitly disabled, and then only on loopback."""
    from service.config import LOOPBACK_HOSTS

    if auth.mode == "disabled":
        if host not in LOOPBACK_HOSTS:
            raise ConfigError(f"auth is disabled: the server binds to loopback only, not {host!r}")
    elif not auth.keys:
        raise ConfigError("no API keys configured: run `facerec keys init`, set FACEREC_API_KEYS="
                          "\"admin:KEY1,client:KEY2\", or set auth.mode: disabled (loopback only)")


class Authenticator:
    """Checks the request's key against the configured ones and the roles a route allows."""

    def __init__(self, auth: AuthConfig):
        self.disabled = auth.mode == "disabled"
        self.keys = parse_keys(auth)

    def identify(self, presented: str | None) -> ApiKey | None:
        if not presented:
            return None
        digest = hashlib.sha256(presented.encode()).digest()
        found = None
        for key in self.keys:  # no early exit: the time taken does not depend on which key matched
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
