"""The API against its own OpenAPI document, by schemathesis: every operation, with both keys, from the
document's examples, its boundaries, random data and stateful sequences (a person created, then read,
changed, enrolled, deleted). Zero server errors and zero mismatches between answers and the document.

A bounded number of examples and a fixed seed keep the run short and the same on every machine.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from http_client import free_port, photo_file, running_server

ADMIN_KEY, CLIENT_KEY = "admin-" + uuid.uuid4().hex, "client-" + uuid.uuid4().hex
SEED = "20261123"
EXAMPLES = "40"
# Operations that take a photo: a schema can say "a file", not "a photo with one face", so a valid-looking
# request with a random file is rightly refused (415, 422); schemathesis's positive_data_acceptance
# check would call that a mismatch, so these run without it.
PHOTO_OPERATIONS = r"^/v1/(verify|identify|people/\{person_id\}/faces)$"
HERE = Path(__file__).resolve().parent
CONFIG = HERE / "schemathesis.toml"


@pytest.fixture(scope="module")
def server(tmp_path_factory, project_root, celebrity_dir):
    if not (project_root / "models" / "facenet_keras.h5").is_file():
        pytest.skip("FaceNet weights not fetched (make models)")
    port = free_port()
    env = {"FACEREC_API_KEYS": f"admin:{ADMIN_KEY},client:{CLIENT_KEY}", "FACEREC_SERVER__WORKERS": "1",
           "FACEREC_DATABASE_URL": ""}
    with running_server(tmp_path_factory.mktemp("schema-home"), port, env, project_root) as client:
        client.call("POST", "/v1/people", ADMIN_KEY, json_body={"id": "madonna"})
        photos = sorted((celebrity_dir / "train" / "madonna").iterdir())[:2]
        client.call("POST", "/v1/people/madonna/faces", ADMIN_KEY, files=[photo_file(p) for p in photos])
        yield f"http://127.0.0.1:{port}"


def schemathesis(base: str, key: str, *options: str) -> tuple[int, int]:
    """Run it; (operations tested, test cases generated). Fails with its report when anything failed."""
    command = [str(Path(sys.executable).parent / "schemathesis"), "--config-file", str(CONFIG), "run", f"{base}/openapi.json",
               "--header", f"X-API-Key: {key}", "--max-examples", EXAMPLES, "--seed", SEED, "--workers", "1",
               "--exclude-path", "/metrics", *options]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "schemathesis_hooks",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, done.stdout[-6000:]
    tested = re.search(r"Tested: (\d+)", done.stdout)
    generated = re.search(r"(\d+) generated, (\d+) passed", done.stdout)
    assert tested and generated and generated[1] == generated[2], done.stdout[-3000:]
    return int(tested[1]), int(generated[1])


@pytest.mark.parametrize("key", ["admin", "client"])
def test_every_operation_answers_as_documented(server, key):
    token = ADMIN_KEY if key == "admin" else CLIENT_KEY
    operations, cases = schemathesis(server, token, "--checks", "all", "--exclude-path-regex", PHOTO_OPERATIONS)
    photo_operations, photo_cases = schemathesis(server, token, "--checks", "all", "--exclude-checks",
                                                 "positive_data_acceptance", "--include-path-regex", PHOTO_OPERATIONS)
    assert (operations, photo_operations) == (12, 4) and cases > 300 and photo_cases > 100, (cases, photo_cases)
