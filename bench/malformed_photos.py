"""Every hostile or odd photo of tests/corpus.py through every photo endpoint and CLI command: the answer's
code and its time, each file on its own. Prints a table; flags any answer over 1 s.

    .venv/bin/python bench/malformed_photos.py

HTTP: a real `facerec serve` (2 workers, a fresh SQLite home) with madonna enrolled from 3 train photos;
each file goes alone, on a new connection, to POST /v1/verify (person madonna), POST /v1/identify and
POST /v1/people/corpus/faces. CLI: `facerec verify FILE --person madonna`, `identify FILE` and
`enroll corpus FILE`, with --json on a temporary home holding madonna likewise, run in this process on
one loaded model (so without the process start and model load, which bench/cli_startup.py and
bench/pipeline_speed.py measure). Afterwards: madonna's faces are unchanged on both rosters, and the
person "corpus" holds exactly the files that were accepted.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import io
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the corpus, and the HTTP client and server runner of the tests

from corpus import corpus  # noqa: E402
from http_client import free_port, multipart, photo_file, running_server  # noqa: E402

ADMIN, CLIENT = "admin-" + uuid.uuid4().hex, "client-" + uuid.uuid4().hex
CELEBRITIES = ROOT / "models" / "data" / "5-celebrity"
GOAL = 1.0  # seconds
HTTP_ROUTES = (("verify", "/v1/verify", CLIENT, {"person": "madonna"}), ("identify", "/v1/identify", CLIENT, {}),
               ("enroll", "/v1/people/corpus/faces", ADMIN, {}))


def post_photo(port: int, path: str, key: str, fields: dict, data: bytes) -> tuple[str, float]:
    """(the answer's code: "200 ok", "422 no_face", "201 accepted"..., seconds) for one photo."""
    body, content_type = multipart([("photo", "corpus.bin", data)], fields)
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", path, body=body, headers={"X-API-Key": key, "Content-Type": content_type})
        response = conn.getresponse()
        answer = json.loads(response.read())
    finally:
        conn.close()
    seconds = time.monotonic() - started
    return f"{response.status} {outcome(answer)}", seconds


def outcome(answer: dict) -> str:
    """The code of an answer: an error's, an enrolled photo's reason, or ok."""
    if "error" in answer:
        return answer["error"]["code"]
    if "photos" in answer:
        photo = answer["photos"][0]
        return "accepted" if photo["status"] == "accepted" else photo["reason"]
    return "ok"


def run_cli(argv: list[str], pipeline) -> tuple[str, float]:
    """(exit code and the answer's code, seconds) of one command, in this process."""
    from service.cli import main

    out = io.StringIO()
    started = time.monotonic()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = main([*argv, "--json"], pipeline=pipeline)
    seconds = time.monotonic() - started
    answer = json.loads(out.getvalue().splitlines()[0])
    return f"{code} {outcome(answer)}", seconds


def load_pipeline(home: Path):
    from service.config import load_config
    from service.pipeline.detect import FaceDetector
    from service.pipeline.encoder import Encoder
    from service.pipeline.runtime import load_facenet
    from service.pipeline.pipeline import Pipeline

    config = load_config(home=str(home))
    facenet = load_facenet(config.model.weights, config.model.cache_dir, config.expected_sha256)
    return Pipeline(Encoder(facenet, config.model.normalization, config.model.batch_size, config.model.flip),
                    FaceDetector(), config)


def http_faces(port: int, person: str) -> list[str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", f"/v1/people/{person}/faces", headers={"X-API-Key": ADMIN})
        return sorted(face["photo_sha256"] for face in json.loads(conn.getresponse().read())["faces"])
    finally:
        conn.close()


def cli_faces(home: Path, person: str, pipeline) -> list[str]:
    from service.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main(["faces", "list", person, "--home", str(home), "--json"], pipeline=pipeline)
    return sorted(face["photo_sha256"] for face in json.loads(out.getvalue())["faces"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    train = sorted((CELEBRITIES / "train" / "madonna").iterdir())[:3]
    files = corpus(sorted((CELEBRITIES / "val" / "madonna").iterdir())[0])
    rows = {name: {"bytes": len(data)} for name, (data, _) in files.items()}
    scratch = Path(tempfile.mkdtemp(prefix="facerec-corpus-bench-"))
    checks = []
    try:
        (scratch / "serve").mkdir()
        env = {"FACEREC_API_KEYS": f"admin:{ADMIN},client:{CLIENT}", "FACEREC_SERVER__WORKERS": "2",
               "FACEREC_DATABASE_URL": ""}
        with running_server(scratch / "serve", free_port(), env, ROOT) as server:
            server.call("POST", "/v1/people", ADMIN, json_body={"id": "madonna"})
            server.call("POST", "/v1/people/madonna/faces", ADMIN, files=[photo_file(p) for p in train])
            server.call("POST", "/v1/people", ADMIN, json_body={"id": "corpus"})
            before = http_faces(server.port, "madonna")
            for name, (data, _) in files.items():
                for column, path, key, fields in HTTP_ROUTES:
                    rows[name][f"HTTP {column}"] = post_photo(server.port, path, key, fields, data)
            checks.append(("HTTP: madonna's faces unchanged", http_faces(server.port, "madonna") == before))
            accepted = sum(row["HTTP enroll"][0].endswith("accepted") for row in rows.values())
            checks.append((f"HTTP: corpus holds the {accepted} accepted files",
                           len(http_faces(server.port, "corpus")) == accepted))
        print("HTTP done; loading the model for the CLI", file=sys.stderr, flush=True)
        home = scratch / "cli"
        pipeline = load_pipeline(home)
        folder = scratch / "files"
        folder.mkdir()
        run_cli(["enroll", "madonna", *map(str, train), "--home", str(home)], pipeline)
        before = cli_faces(home, "madonna", pipeline)
        for number, (name, (data, _)) in enumerate(files.items()):
            photo = folder / f"{number:02d}.img"
            photo.write_bytes(data)
            for column, argv in (("verify", ["verify", str(photo), "--person", "madonna"]),
                                 ("identify", ["identify", str(photo)]), ("enroll", ["enroll", "corpus", str(photo)])):
                rows[name][f"CLI {column}"] = run_cli([*argv, "--home", str(home)], pipeline)
        checks.append(("CLI: madonna's faces unchanged", cli_faces(home, "madonna", pipeline) == before))
        accepted = sum(row["CLI enroll"][0].endswith("accepted") for row in rows.values())
        corpus_faces = cli_faces(home, "corpus", pipeline) if accepted else []
        checks.append((f"CLI: corpus holds the {accepted} accepted files", len(corpus_faces) == accepted))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return report(rows, checks)


def report(rows: dict, checks: list) -> int:
    columns = [f"{front} {endpoint}" for front in ("HTTP", "CLI") for endpoint in ("verify", "identify", "enroll")]
    slowest = max(seconds for row in rows.values() for _, seconds in (row[c] for c in columns))
    print(f"{len(rows)} corpus files (tests/corpus.py), {os.cpu_count()} cores; each cell: the answer "
          f"(HTTP status or CLI exit code, and the code) and its time in ms; * over {GOAL:g} s")
    print("| file | bytes | " + " | ".join(columns) + " | max ms |")
    print("|---|---:|" + "---|" * len(columns) + "---:|")
    over = 0
    for name, row in rows.items():
        cells = []
        for column in columns:
            code, seconds = row[column]
            over += seconds > GOAL
            cells.append(f"{code}, {seconds * 1000:.0f}{' *' if seconds > GOAL else ''}")
        worst = max(row[column][1] for column in columns)
        print(f"| {name} | {row['bytes']:,} | " + " | ".join(cells) + f" | {worst * 1000:.0f} |")
    print(f"\nslowest answer: {slowest * 1000:.0f} ms; answers over {GOAL:g} s: {over}")
    for check, passed in checks:
        print(f"{'ok  ' if passed else 'FAIL'} {check}")
    return 0 if over == 0 and all(passed for _, passed in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
