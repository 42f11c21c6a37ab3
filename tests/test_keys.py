"""API keys at rest: the keys file holds only hashes; `facerec keys init | add | list | revoke` manage it
(atomically, one command at a time); an old plaintext file is converted in place; a malformed file is a
clear error; and a running server (2 workers) sees a key added or revoked from its next request."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import stat
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from http_client import free_port, running_server
from service.cli import EXIT_INPUT_ERROR, main
from service.config import load_config
from service.errors import ConfigError
from service.http.keys import KeysFile, read

FACEREC = Path(sys.executable).parent / "facerec"
# What `keys init` wrote before the file held hashes.
OLD_FILE = ("# facerec API keys (role:key). Send one in the X-API-Key header.\n"
            "keys:\n- admin:{admin}\n- client:{client}\n")
OLD_ADMIN, OLD_CLIENT = "old-admin-" + "a" * 43, "old-client-" + "b" * 43


@pytest.fixture(autouse=True)
def no_environment_keys(monkeypatch):
    monkeypatch.delenv("FACEREC_API_KEYS", raising=False)


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def keys_json(capsys, home: Path, *argv) -> tuple[int, dict, str]:
    code, out, err = run(capsys, "keys", *argv, "--home", str(home), "--json")
    return code, json.loads(out), err


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def app_client(home: Path, env: dict | None = None):
    """The HTTP app without a model (whoami needs none), as one worker would run it."""
    from service.http.app import create_app

    return create_app(load_config(home=str(home), env=env or {}), load_model=False).test_client()


def whoami(http, key: str) -> int:
    return http.get("/v1/whoami", headers={"X-API-Key": key}).status_code


# ---- the commands and the file they write ---------------------------------------------------------------

def test_add_list_revoke_keep_only_hashes(tmp_path, capsys):
    code, added, err = keys_json(capsys, tmp_path, "add", "--role", "admin", "--name", "ops laptop")
    assert code == 0 and set(added) == {"id", "role", "name", "created", "key"}
    key = added["key"]
    assert added["id"] == f"admin:{sha(key)[:8]}" and added["role"] == "admin" and added["name"] == "ops laptop"
    assert len(key) >= 43 and "shown this once" in err and key not in err
    path = tmp_path / "api-keys.yaml"
    text = path.read_text()
    assert key not in text and sha(key) in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["api-keys.yaml", "api-keys.yaml.lock"]  # no temp file left

    code, out, err = run(capsys, "keys", "add", "--role", "client", "--home", str(tmp_path))
    client_key = out.strip()  # text mode: the key alone on stdout, for KEY=$(facerec keys add ...)
    assert code == 0 and out == client_key + "\n" and sha(client_key) in path.read_text()

    code, listed, _ = keys_json(capsys, tmp_path, "list")
    assert code == 0 and [(k["id"], k["role"], k["name"], k["source"]) for k in listed["keys"]] == [
        (added["id"], "admin", "ops laptop", "file"), (f"client:{sha(client_key)[:8]}", "client", "", "file")]
    code, out, _ = run(capsys, "keys", "list", "--home", str(tmp_path))
    for shown in (json.dumps(listed), out):
        assert key not in shown and client_key not in shown and sha(key) not in shown and sha(client_key) not in shown

    code, revoked, err = keys_json(capsys, tmp_path, "revoke", f"client:{sha(client_key)[:8]}")
    assert code == 0 and revoked["revoked"] == f"client:{sha(client_key)[:8]}" and revoked["admin_keys_left"] == 1
    assert "warning" not in err and sha(client_key) not in path.read_text()
    code, error, err = keys_json(capsys, tmp_path, "revoke", f"client:{sha(client_key)[:8]}")
    assert code == EXIT_INPUT_ERROR and error["error"]["code"] == "unknown_key"
    assert str(path) in error["error"]["message"]

    code, revoked, err = keys_json(capsys, tmp_path, "revoke", added["id"])  # the last admin key: allowed, warned
    assert code == 0 and revoked["admin_keys_left"] == 0 and "warning: no admin key is left" in err
    assert keys_json(capsys, tmp_path, "list")[1]["keys"] == []


def test_revoke_refuses_what_is_not_an_id_without_echoing_it(tmp_path, capsys):
    keys_json(capsys, tmp_path, "add", "--role", "admin")
    before = (tmp_path / "api-keys.yaml").read_bytes()
    pasted_key = "AbCdEf0123456789-pasted-instead-of-an-id"
    code, out, err = run(capsys, "keys", "revoke", f"admin:{pasted_key}", "--home", str(tmp_path), "--json")
    assert code == EXIT_INPUT_ERROR and json.loads(out)["error"]["code"] == "unknown_key"
    assert pasted_key not in out + err and (tmp_path / "api-keys.yaml").read_bytes() == before


def test_a_configured_key_is_listed_but_revoked_only_where_it_is_configured(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FACEREC_API_KEYS", "admin:from-the-environment")
    code, listed, _ = keys_json(capsys, tmp_path, "list")
    [row] = listed["keys"]
    assert row == {"id": f"admin:{sha('from-the-environment')[:8]}", "role": "admin", "name": "", "created": "",
                   "source": "config"}
    code, error, _ = keys_json(capsys, tmp_path, "revoke", row["id"])
    assert code == EXIT_INPUT_ERROR and "FACEREC_API_KEYS" in error["error"]["message"]


def test_init_prints_two_keys_once_and_only_when_none_is_configured(tmp_path, capsys, monkeypatch):
    code, out, err = run(capsys, "keys", "init", "--home", str(tmp_path))
    lines = [line.split() for line in out.splitlines()]
    assert code == 0 and [role for role, _ in lines] == ["admin", "client"] and "not shown again" in err
    text = (tmp_path / "api-keys.yaml").read_text()
    for _, key in lines:
        assert key not in text and sha(key) in text
    assert stat.S_IMODE((tmp_path / "api-keys.yaml").stat().st_mode) == 0o600
    code, again, _ = keys_json(capsys, tmp_path, "init")
    assert code == 0 and again == {"created": None, "keys": []}
    assert (tmp_path / "api-keys.yaml").read_text() == text

    other = tmp_path / "configured"
    monkeypatch.setenv("FACEREC_API_KEYS", "admin:k")
    assert keys_json(capsys, other, "init")[1] == {"created": None, "keys": []} and not other.exists()
    monkeypatch.delenv("FACEREC_API_KEYS")
    code, made, _ = keys_json(capsys, other, "init")
    assert code == 0 and made["created"] == str(other / "api-keys.yaml")
    assert [k["role"] for k in made["keys"]] == ["admin", "client"]
    assert all(set(k) == {"id", "role", "name", "created", "key"} for k in made["keys"])


# ---- an old plaintext file ----------------------------------------------------------------------------------

def test_a_plaintext_file_is_converted_in_place_and_its_keys_keep_working(tmp_path, capsys):
    path = tmp_path / "api-keys.yaml"
    path.write_text(OLD_FILE.format(admin=OLD_ADMIN, client=OLD_CLIENT))
    os.chmod(path, 0o600)
    http = app_client(tmp_path)  # a worker reading an old file accepts its keys, without rewriting it
    assert whoami(http, OLD_ADMIN) == 200 and whoami(http, OLD_CLIENT) == 200
    before = http.get("/v1/whoami", headers={"X-API-Key": OLD_CLIENT}).get_json()["key_id"]
    assert OLD_CLIENT in path.read_text()

    code, listed, err = keys_json(capsys, tmp_path, "list")
    assert code == 0 and "converted the keys file" in err and str(path) in err
    text = path.read_text()
    assert OLD_ADMIN not in text and OLD_CLIENT not in text and sha(OLD_ADMIN) in text and sha(OLD_CLIENT) in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [(k["id"], k["name"]) for k in listed["keys"]] == [
        (f"admin:{sha(OLD_ADMIN)[:8]}", "migrated"), (f"client:{sha(OLD_CLIENT)[:8]}", "migrated")]
    assert whoami(http, OLD_ADMIN) == 200  # the same worker, the converted file: the same keys
    assert http.get("/v1/whoami", headers={"X-API-Key": OLD_CLIENT}).get_json()["key_id"] == before  # audit ids hold
    code, _, err = keys_json(capsys, tmp_path, "list")
    assert "converted" not in err and path.read_text() == text  # once


def test_serve_converts_a_plaintext_file_before_it_starts(tmp_path):
    from service.http.auth import check_startable

    path = tmp_path / "api-keys.yaml"
    path.write_text(OLD_FILE.format(admin=OLD_ADMIN, client=OLD_CLIENT))
    said = []
    check_startable(load_config(home=str(tmp_path), env={}).auth, "127.0.0.1", announce=said.append)
    assert len(said) == 1 and "converted" in said[0] and OLD_ADMIN not in path.read_text()


def test_a_file_that_cannot_be_converted_is_still_read(tmp_path, monkeypatch):
    path = tmp_path / "api-keys.yaml"
    path.write_text(OLD_FILE.format(admin=OLD_ADMIN, client=OLD_CLIENT))

    def read_only_disk(*_):  # fault injection: the converted file cannot replace the old one
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(os, "replace", read_only_disk)
    said = []
    stored = KeysFile(path).load(said.append)
    assert [k.sha256 for k in stored] == [sha(OLD_ADMIN), sha(OLD_CLIENT)]
    assert len(said) == 1 and "cannot change the keys file" in said[0] and "stay in the clear" in said[0]
    assert OLD_ADMIN in path.read_text() and sorted(p.name for p in tmp_path.iterdir()) == [
        "api-keys.yaml", "api-keys.yaml.lock"]


# ---- malformed files ------------------------------------------------------------------------------------

ENTRY = {"id": "admin:" + "0" * 8, "role": "admin", "name": "x", "created": "2024-01-01T00:00:00Z", "sha256": "0" * 64}
BAD_FILES = {
    "bad YAML": ("keys: [\n- admin:" + OLD_ADMIN + "\n", "not valid YAML at line"),
    "not a mapping": ("- admin:" + OLD_ADMIN + "\n", "must be a YAML mapping"),
    "keys not a list": ("keys: {admin: " + OLD_ADMIN + "}\n", "must be a YAML mapping"),
    "unknown section": ("keys: []\nextra: 1\n", "must be a YAML mapping"),
    "a number for an entry": ("keys:\n- 12\n", "entry 1 is neither"),
    "plaintext unknown role": ("keys:\n- root:" + OLD_ADMIN + "\n", "entry 1 is not 'role:key'"),
    "plaintext no colon": ("keys:\n- " + OLD_ADMIN + "\n", "entry 1 is not 'role:key'"),
    "hashed unknown role": ("keys:\n- " + json.dumps({**ENTRY, "role": "root"}) + "\n", "unknown role 'root'"),
    "short hash": ("keys:\n- " + json.dumps({**ENTRY, "sha256": "abc"}) + "\n", "64 lowercase hex"),
    "id not its hash": ("keys:\n- " + json.dumps({**ENTRY, "id": "admin:12345678"}) + "\n", "is not its role"),
    "unknown field": ("keys:\n- " + json.dumps({**ENTRY, "key": OLD_ADMIN}) + "\n", "must have id, role"),
    "not UTF-8": (b"keys:\n- admin:\xff\xfe\n", "not UTF-8"),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_a_malformed_keys_file_is_a_clear_error_naming_it(tmp_path, capsys, case):
    content, message = BAD_FILES[case]
    path = tmp_path / "api-keys.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    for argv in (["keys", "list"], ["keys", "add", "--role", "client"], ["keys", "init"], ["serve"]):
        code, out, err = run(capsys, *argv, "--home", str(tmp_path), "--json")
        error = json.loads(out)["error"]
        assert code == EXIT_INPUT_ERROR and error["code"] == "config_error", (argv, error)
        assert str(path) in error["message"] and message in error["message"], (argv, error)
        assert "Traceback" not in err and OLD_ADMIN not in out + err
    assert path.read_bytes() == (content if isinstance(content, bytes) else content.encode())  # left as it was
    assert run(capsys, "people", "list", "--home", str(tmp_path), "--json")[0] == 0  # other commands do not care


def test_serve_refuses_to_start_with_no_usable_key(tmp_path, capsys):
    (tmp_path / "api-keys.yaml").write_text("keys: []\n")
    code, out, _ = run(capsys, "serve", "--home", str(tmp_path), "--json")
    error = json.loads(out)["error"]
    assert code == EXIT_INPUT_ERROR and "no API keys configured" in error["message"] and "keys add" in error["message"]


# ---- a worker rereads the file when it changes ------------------------------------------------------------

def test_a_worker_sees_each_change_from_its_next_request(tmp_path):
    keys = KeysFile(tmp_path / "api-keys.yaml")
    admin, admin_key = keys.add("admin", "", print)
    http = app_client(tmp_path, env={"FACEREC_API_KEYS": "client:from-the-environment"})
    assert whoami(http, admin_key) == 200
    client, client_key = keys.add("client", "door", print)
    assert whoami(http, client_key) == 200  # added after the worker started
    keys.revoke(client.id, print)
    assert whoami(http, client_key) == 401 and whoami(http, admin_key) == 200

    good = (tmp_path / "api-keys.yaml").read_text()
    (tmp_path / "api-keys.yaml").write_text(good + "- oops\n")  # a hand edit gone wrong: fail closed
    assert whoami(http, admin_key) == 401 and whoami(http, "from-the-environment") == 200
    (tmp_path / "api-keys.yaml").write_text(good)
    assert whoami(http, admin_key) == 200
    (tmp_path / "api-keys.yaml").unlink()
    assert whoami(http, admin_key) == 401 and whoami(http, "from-the-environment") == 200


# ---- atomic writes, one command at a time ------------------------------------------------------------------

def test_a_reader_never_sees_a_half_written_file(tmp_path):
    keys = KeysFile(tmp_path / "api-keys.yaml")
    keys.add("admin", "first", print)
    seen, errors, done = [], [], threading.Event()

    def reader():
        while not done.is_set():
            try:
                seen.append(len(read(keys.path).keys))
            except ConfigError as exc:
                errors.append(exc.message)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for n in range(60):
            keys.add("client", f"door {n}", print)
    finally:
        done.set()
        thread.join()
    assert not errors, errors[:3]
    assert min(seen) >= 1 and seen == sorted(seen) and len(set(seen)) > 5  # saw the file grow, whole each time
    assert len(read(keys.path).keys) == 61


def test_a_failed_write_leaves_the_file_as_it_was(tmp_path, monkeypatch):
    keys = KeysFile(tmp_path / "api-keys.yaml")
    keys.add("admin", "", print)
    before = keys.path.read_bytes()

    def full_disk(*_):  # fault injection: the rename fails, as on a full or read-only disk
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(ConfigError, match=f"cannot change the keys file {keys.path}: No space left"):
        keys.add("client", "", print)
    assert keys.path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["api-keys.yaml", "api-keys.yaml.lock"]


def test_commands_wait_for_each_other(tmp_path):
    """A command waits while another holds the lock, then goes on; none is lost when many run at once."""
    home = tmp_path
    KeysFile(home / "api-keys.yaml").add("admin", "", print)  # makes the lock file
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    with open(home / "api-keys.yaml.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        waiting = subprocess.Popen([str(FACEREC), "keys", "add", "--role", "client", "--home", str(home), "--json"],
                                   env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(4)  # ample for the command to start and reach the lock on a busy machine
        assert waiting.poll() is None, waiting.communicate()
        with pytest.raises(ConfigError, match="being changed by another command"):
            KeysFile(home / "api-keys.yaml", lock_timeout=0.2).add("client", "", print)
    out, err = waiting.communicate(timeout=60)
    assert waiting.returncode == 0, err
    assert sha(json.loads(out)["key"]) in (home / "api-keys.yaml").read_text()

    def add(n):
        done = subprocess.run([str(FACEREC), "keys", "add", "--role", "client", "--name", f"door {n}",
                               "--home", str(home), "--json"], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)["id"]

    with ThreadPoolExecutor(6) as pool:
        ids = list(pool.map(add, range(6)))
    stored = {k.id for k in read(home / "api-keys.yaml").keys}
    assert set(ids) <= stored and len(stored) == 8


# ---- the real server, two workers ----------------------------------------------------------------------------

def cli(home: Path, *argv) -> dict:
    done = subprocess.run([str(FACEREC), "keys", *argv, "--home", str(home), "--json"], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


_REQUESTS = re.compile(r'facerec_http_requests_total\{endpoint="([^"]*)",method="GET",status="(\d+)",'
                       r'pid="(\d+)"\} (\d+)')


def answered_by(client, endpoint: str, status: int) -> dict[str, int]:
    """Per worker pid, how many ``endpoint`` requests it answered with ``status``: /metrics is per worker,
    so scrape until both workers have answered a scrape."""
    counts: dict[str, int] = {}
    for _ in range(200):
        text = client.call("GET", "/metrics")[1]
        found = re.search(r'pid="(\d+)"', text)
        if found is None:  # a worker that had answered nothing before this scrape: no series, no pid yet
            continue
        pid = found.group(1)
        counts[pid] = sum(int(n) for e, s, p, n in _REQUESTS.findall(text) if e == endpoint and s == str(status))
        if len(counts) == 2:
            return counts
    raise AssertionError(f"only one worker answered 200 scrapes: {counts}")


def burst(client, key: str, path: str = "/v1/whoami", count: int = 40) -> list[int]:
    """``count`` requests with ``key``, four at a time so both workers get some."""
    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(lambda _: client.call("GET", path, key)[0], range(count)))


def test_a_key_revoked_with_the_cli_is_refused_by_every_worker(tmp_path, project_root):
    if not (project_root / "models" / "facenet_keras.h5").is_file():
        pytest.skip("FaceNet weights not fetched (make models)")
    home = tmp_path
    (home / "api-keys.yaml").write_text(OLD_FILE.format(admin=OLD_ADMIN, client=OLD_CLIENT))  # an old plaintext file
    with running_server(home, free_port(), {"FACEREC_SERVER__WORKERS": "2"}, project_root) as client:
        assert "converted the keys file" in (home / "server.log").read_text()
        assert OLD_ADMIN not in (home / "api-keys.yaml").read_text()
        assert client.call("GET", "/v1/people", OLD_ADMIN)[0] == 200

        added = cli(home, "add", "--role", "client", "--name", "door")  # while serving: no restart
        for _ in range(10):  # until both workers have accepted it
            assert set(burst(client, added["key"])) == {200}
            accepted = answered_by(client, "/v1/whoami", 200)
            if all(accepted.values()):
                break
        assert len(accepted) == 2 and all(accepted.values()), accepted

        assert cli(home, "revoke", added["id"])["revoked"] == added["id"]
        refused_before = answered_by(client, "/v1/whoami", 401)
        statuses = []
        for _ in range(10):  # every request from now on is refused, until both workers have refused it
            statuses += burst(client, added["key"])
            refused = answered_by(client, "/v1/whoami", 401)
            if all(refused[pid] > refused_before.get(pid, 0) for pid in refused):
                break
        assert set(statuses) == {401}
        assert all(refused[pid] > refused_before.get(pid, 0) for pid in refused), (refused_before, refused)

        admin = cli(home, "add", "--role", "admin")  # another added while serving, on an admin route
        assert set(burst(client, admin["key"], "/v1/people", 20)) == {200}
        assert set(burst(client, OLD_CLIENT)) == {200}  # the others are untouched
