"""``facerec keys init | add | list | revoke``: the HTTP service's API keys.

The keys file keeps only each key's hash, so a new key is printed once, when it is made (alone on
stdout in text mode, so ``KEY=$(facerec keys add --role client)`` works; in ``key`` with ``--json``).
A running server sees every change from its next request: no restart.
"""

from __future__ import annotations

import argparse

from service.cli.parser import Commands
from service.config import API_ROLES, AuthConfig
from service.errors import FacerecError, UnknownKey


def register(commands: Commands) -> None:
    keys = commands.group("keys", "API keys of the HTTP service (the keys file holds only their hashes)")
    keys.add("init", init_keys, "make an admin and a client key when no key is configured, and print them once",
             example="facerec keys init    # `make serve` runs it")
    cmd = keys.add("add", add_key, "make a key and print it once; the keys file keeps only its hash",
                   example="facerec keys add --role client --name front-door")
    cmd.add_argument("--role", required=True, choices=API_ROLES,
                     help="admin: every endpoint; client: verify, identify and whoami")
    cmd.add_argument("--name", default="", type=_name, help="a label to tell keys apart in `keys list` "
                                                            "(one line, at most 64 characters)")
    keys.add("list", list_keys, "the keys accepted: id, role, name, created (never a key or its hash)",
             example="facerec keys list --json")
    cmd = keys.add("revoke", revoke_key, "remove a key from the keys file; a running server refuses it from "
                                         "its next request", example="facerec keys revoke client:3f2a9c1d")
    cmd.add_argument("id", help="the key's id, as `keys list`, the logs and the audit show it")


def _name(text: str) -> str:
    from service.http.keys import check_name

    try:
        return check_name(text)
    except FacerecError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def _keys_file(auth: AuthConfig):
    from service.http.keys import KeysFile

    return KeysFile(auth.keys_file)


def _configured(auth: AuthConfig) -> list[dict]:
    """The configuration's keys (config.yaml auth.keys, FACEREC_API_KEYS) as ``keys list`` shows them."""
    from service.http.keys import digest_hex, key_id

    rows = []
    for entry in auth.keys:
        role, _, key = entry.partition(":")
        rows.append({"id": key_id(role, digest_hex(key)), "role": role, "name": "", "created": "",
                     "source": "config"})
    return rows


def init_keys(args, core, out) -> int:
    auth = core.config.auth
    made = None
    if auth.mode != "disabled" and not auth.keys:
        made = _keys_file(auth).init(announce=out.note)
    if made is None:
        out.document({"created": None, "keys": []}, "API keys already configured (or auth disabled): nothing to do")
        return 0
    rows = [{**entry.public(), "key": key} for entry, key in made]
    out.document({"created": str(auth.keys_file), "keys": rows},
                 "\n".join(f"{row['role']:<7}{row['key']}" for row in rows))
    out.note(f"created {auth.keys_file} (mode 0600) holding only these keys' hashes: keep the keys now, "
             f"they are not shown again. Send one in the X-API-Key header.")
    return 0


def add_key(args, core, out) -> int:
    path = core.config.auth.keys_file
    entry, key = _keys_file(core.config.auth).add(args.role, args.name, announce=out.note)
    out.document({**entry.public(), "key": key}, key)
    label = f", {entry.name}" if entry.name else ""
    out.note(f"added {entry.id} ({entry.role}{label}) to {path}: the key is shown this once, the file keeps only "
             f"its hash; a running server accepts it from its next request")
    return 0


def list_keys(args, core, out) -> int:
    auth = core.config.auth
    stored = _keys_file(auth).load(announce=out.note)
    rows = [{**entry.public(), "source": "file"} for entry in stored] + _configured(auth)
    if rows:
        text = "\n".join(f"{r['id']:<17} {r['role']:<7} {r['created'] or '-':<21} {r['source']:<7} {r['name']}"
                         for r in rows)
        text = f"{'id':<17} {'role':<7} {'created':<21} {'source':<7} name\n" + text
    else:
        text = f"no API keys: the keys file {auth.keys_file} holds none and none is configured"
    out.document({"keys_file": str(auth.keys_file), "keys": rows}, text)
    if auth.mode == "disabled":
        out.note("auth.mode is disabled: the server accepts requests without a key (loopback only)")
    return 0


def revoke_key(args, core, out) -> int:
    from service.http.keys import KEY_ID

    auth = core.config.auth
    if not KEY_ID.match(args.id):  # not echoed: someone may have pasted a key instead of its id
        raise UnknownKey("that is not a key id: ids look like client:3f2a9c1d (see `facerec keys list`)")
    try:
        gone, left = _keys_file(auth).revoke(args.id, announce=out.note)
    except UnknownKey:
        if any(row["id"] == args.id for row in _configured(auth)):
            raise FacerecError(f"key {args.id} comes from the configuration (config.yaml auth.keys or "
                               f"FACEREC_API_KEYS), not the keys file: remove it there and restart the "
                               f"server") from None
        raise
    admins = sum(k.role == "admin" for k in left) + sum(row["role"] == "admin" for row in _configured(auth))
    out.document({"revoked": gone.id, "role": gone.role, "name": gone.name, "admin_keys_left": admins},
                 f"revoked {gone.id}: a running server refuses it from its next request")
    if admins == 0:
        out.note("warning: no admin key is left, so nobody can manage people over HTTP; "
                 "`facerec keys add --role admin` makes one")
    return 0
