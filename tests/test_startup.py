"""Light commands stay light: no TensorFlow unless the network runs, checked with ``python -X importtime``
in fresh processes; an unknown person is refused before any model load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from service.cli import main

HEAVY = ("tensorflow", "keras")


def run_with_importtime(*argv: str, cwd: Path | None = None) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Run ``facerec ARGV`` in a fresh interpreter; (the process, the top-level packages it imported)."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "service.cli", *argv], capture_output=True,
                          text=True, timeout=120, cwd=cwd, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    imported = set()
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            imported.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    assert imported, done.stderr[-2000:]  # the check itself must see imports, or it proves nothing
    return done, imported


@pytest.fixture(scope="module")
def home(tmp_path_factory, pipeline, celebrity_dir):
    """A roster with one person, enrolled through the CLI."""
    home = tmp_path_factory.mktemp("startup-home")
    photos = sorted((celebrity_dir / "train" / "madonna").iterdir())[:2]
    assert main(["enroll", "madonna", *map(str, photos), "--home", str(home)], pipeline=pipeline) == 0
    return home


@pytest.mark.parametrize("argv, exit_code", [
    (["--help"], 0),
    (["people", "list", "--json"], 0),
    (["people", "show", "madonna", "--json"], 0),
    (["faces", "list", "madonna", "--json"], 0),
    (["faces", "remove", "999999", "--json"], 2),
    (["db", "upgrade", "--json"], 0),
    (["keys", "init", "--json"], 0),
    (["keys", "add", "--role", "client", "--json"], 0),
    (["keys", "list", "--json"], 0),
    (["keys", "revoke", "client:00000000", "--json"], 2),
    (["audit", "list", "--json"], 0),
    (["audit", "purge", "--json"], 0),
])
def test_roster_commands_import_no_tensorflow(home, argv, exit_code):
    done, imported = run_with_importtime(*argv, "--home", str(home)) if argv != ["--help"] else \
        run_with_importtime(*argv)
    assert done.returncode == exit_code, done.stderr[-2000:]
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))
    if argv[0] == "faces" and argv[1] == "remove":
        assert json.loads(done.stdout)["error"]["code"] == "unknown_face"
    elif argv[:2] == ["keys", "list"]:
        assert [k["role"] for k in json.loads(done.stdout)["keys"]] == ["admin", "client", "client"]
    elif argv[0] == "people" and argv[1] == "list":
        assert [p["id"] for p in json.loads(done.stdout)["people"]] == ["madonna"]


def test_the_decision_rules_import_no_tensorflow():
    done = subprocess.run([sys.executable, "-X", "importtime", "-c",
                           "import service.app.rules, service.app.results, service.app.inputs, service.app.photos"],
                          capture_output=True, text=True, timeout=60)
    imported = {line.rsplit("|", 1)[1].strip().split(".")[0] for line in done.stderr.splitlines()
                if line.startswith("import time:") and "|" in line}
    assert done.returncode == 0 and "numpy" in imported and not imported & set(HEAVY)


def test_an_unknown_person_is_refused_before_any_model_load(home, celebrity_dir):
    probe = sorted((celebrity_dir / "val" / "madonna").iterdir())[0]
    done, imported = run_with_importtime("verify", str(probe), "nobody", "--home", str(home), "--json")
    assert done.returncode == 2 and json.loads(done.stdout)["error"]["code"] == "unknown_person"
    assert not imported & set(HEAVY) and "loading the face model" not in done.stderr


def test_a_fully_cached_evaluate_loads_no_model(tmp_path, pipeline, celebrity_dir, capsys):
    args = ["evaluate", str(celebrity_dir / "val"), "--home", str(tmp_path), "--figures", str(tmp_path / "figures"), "--json"]
    assert main(args, pipeline=pipeline) == 0  # fills the encoding cache
    first = json.loads(capsys.readouterr().out)
    done, imported = run_with_importtime(*args)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not imported & set(HEAVY)
    again = json.loads(done.stdout)
    assert again["verification"] == first["verification"]
