"""Crash safety: 20 SIGKILLs, ten on SQLite and ten on PostgreSQL, at random points of `facerec import`,
`facerec reindex --reembed` and HTTP enrollment against a real `facerec serve` (its worker, or the whole
server), all on one data home per database, with real photos and the real model.

After each kill comes a start (the roster opened as every process opens it, or the server coming back),
and then: every photo a killed process reported as enrolled (a JSON line written, a 201 received) is in
the database, no row is an orphan, no crop file, temporary or partial file is under the home, and the
index a start loads holds exactly the database's faces under their encodings
(``tests/roster_invariants.py``).

The kills are drawn from a fixed seed, so CI runs the same ones: a random delay once the work began, or
a random occurrence of a stage the process is held at until killed (``tests/crash_probe.py``): migrating
a new database, decoding and encoding photos, inside the write transaction, committed but not yet
reported, re-encoding, saving the index between writing and renaming its file. Each kill's landing
place is printed (``-s`` shows the table).
"""

from __future__ import annotations

import http.client
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import update

from crash_probe import landed
from http_client import free_port, photo_file, start_server, wait_ready
from roster_invariants import check_home, read_database
from service.config import load_config
from service.pipeline.model_id import configured_model_id
from service.roster.database import FaceRow, bump_generation, make_engine, session_factory

PROBE = Path(__file__).with_name("crash_probe.py")
SEED = 11
STALE_MODEL = "an-older-model"
ADMIN_KEY = "admin-" + uuid.uuid4().hex


@dataclass(frozen=True)
class Kill:
    hold: str | None = None  # "<stage>:<n>": held at the n-th arrival there, then killed
    delay: float | None = None  # otherwise killed this many seconds after its work began (below)
    target: str = "process"  # under serve: "worker" (gunicorn starts another) or "server" (the whole group)

    def __str__(self) -> str:
        what = f"held at {self.hold}" if self.hold else f"{self.delay:.1f} s into the work"
        return what if self.target == "process" else f"{self.target} {what}"


def plan() -> dict[str, dict[str, list[Kill]]]:
    """Both backends' kills, 10 + 10, drawn from SEED: each stage somewhere, in a random order and at a
    random occurrence, the rest at random delays. An import's first save is the index's first (built
    for its first batch, the migration having been killed); a re-encoding saves once all is done."""
    rng = random.Random(SEED)

    def held(stage: str, most: int, target: str = "process") -> Kill:
        return Kill(hold=f"{stage}:{rng.randint(1, most)}", target=target)

    def timed(low: float, high: float, target: str = "process") -> Kill:
        return Kill(delay=round(rng.uniform(low, high), 1), target=target)

    imports = [held("locate", 3), held("transaction", 4), held("follow", 4), timed(0, 4), timed(0, 4)]
    reembeds = [held("stale", 4), held("transaction", 4), held("follow", 4), timed(0, 2)]
    workers = [held(stage, 3, "worker") for stage in ("locate", "transaction", "follow")]
    rng.shuffle(imports)
    rng.shuffle(reembeds)
    rng.shuffle(workers)
    save = Kill(hold="save:1")
    return {
        "sqlite": {"import": [Kill(hold="migrate:1"), save, *imports[:2]],
                   "reembed": [*reembeds[:2], save],
                   "http": [workers[0], timed(0.5, 3, "worker"), Kill(hold="save:1", target="server")]},
        "postgresql": {"import": [Kill(hold="migrate:1"), *imports[2:]],
                       "reembed": [*reembeds[2:], save],
                       "http": [workers[1], timed(0.5, 3, "server"), Kill(hold="save:1", target="server")]},
    }


class Crashes:
    """One data home, the kills made on it and what the killed processes reported."""

    def __init__(self, home: Path, log: Path, project_root: Path):
        self.home, self.log, self.project_root = home, log, project_root
        self.model_id = configured_model_id(load_config(home=str(home)))
        self.reported: dict[int, str] = {}  # face id -> person, of every photo reported as enrolled
        self.may_be_faceless: set[str] = set()  # people created on their own (POST /v1/people)
        self.landings: list[tuple[str, str, str]] = []
        self.holds = 0
        self.phases: list[tuple[str, float]] = []

    def env(self, kill: Kill | None) -> dict:
        """The environment of a process killed as ``kill`` says (or not killed): a hold of its own."""
        self.holds += 1
        return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CRASH_PROBE_LOG": str(self.log),
                "CRASH_PROBE_HOLD": kill.hold if kill and kill.hold else "",
                "CRASH_PROBE_HELD": f"{self.log}.held-{self.holds}"}

    def command(self, *argv: str) -> list[str]:
        return [sys.executable, str(PROBE), *argv, "--home", str(self.home), "--json"]

    def run_and_kill(self, workload: str, kill: Kill, *argv: str) -> list[dict]:
        """Run ``facerec ARGV`` and SIGKILL it as planned; the JSON lines it printed before dying. A
        delay counts from its first photo or crop read (starting up takes seconds, longer on a busy
        machine; the migration is a kill of its own)."""
        process = subprocess.Popen(self.command(*argv), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                   env=self.env(kill), cwd=self.project_root)
        lines: list[dict] = []
        reader = threading.Thread(target=lambda: lines.extend(json.loads(line) for line in process.stdout))
        reader.start()
        self.wait_for(kill, process, process.pid, work="+locate" if workload == "import" else "+stale")
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
        reader.join(timeout=60)
        self.record(workload, kill, process.pid)
        assert process.returncode == -signal.SIGKILL, f"{workload} ended ({process.returncode}) before {kill}"
        return lines

    def wait_for(self, kill: Kill, process: subprocess.Popen, pid: int, work: str | None = None,
                 deadline: float = 120) -> None:
        """Until the planned moment: ``pid`` held at the stage, or the delay passed (counted from its
        ``work`` event when given)."""
        if kill.delay is not None and work is None:
            time.sleep(kill.delay)
            return
        awaited = f"{pid} hold " if kill.hold else f"{pid} {work}\n"
        started = time.monotonic()
        while awaited not in (self.log.read_text() if self.log.exists() else ""):
            assert process.poll() is None, f"exited ({process.returncode}) before {kill}"
            assert time.monotonic() - started < deadline, f"{kill} not reached in {deadline} s"
            time.sleep(0.05)
        if kill.delay is not None:
            time.sleep(kill.delay)

    def record(self, workload: str, kill: Kill, pid: int) -> None:
        self.landings.append((workload, str(kill), landed(self.log, pid)))

    def note(self, outcomes: list[dict]) -> None:
        """Remember the photos reported as enrolled."""
        for outcome in outcomes:
            if outcome.get("status") == "accepted":
                self.reported[outcome["face_id"]] = outcome["person"]

    def restart(self) -> None:
        """The start every command makes (the roster opened: migrations, leftovers), in a light one."""
        done = subprocess.run(self.command("people", "list"), capture_output=True, text=True, env=self.env(None),
                              cwd=self.project_root, timeout=120)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]

    def check(self):
        """The invariants (tests/roster_invariants.py), on a home no process is writing to."""
        return check_home(self.home, self.model_id, self.reported, self.may_be_faceless)


@pytest.fixture
def crashes(database_url, tmp_path, project_root):
    if not (project_root / "models" / "facenet_keras.h5").is_file():
        pytest.skip("FaceNet weights not fetched (make models)")
    (tmp_path / "home").mkdir()
    crashes = Crashes(tmp_path / "home", tmp_path / "probe.log", project_root)
    yield crashes
    print(f"\n{'workload':8}  {'kill':32}  landed")
    for workload, kill, where in crashes.landings:
        print(f"{workload:8}  {kill:32}  {where}")
    print("  ".join(f"{phase} {seconds:.0f} s" for phase, seconds in crashes.phases))


def photo_folder(celebrity_dir: Path, target: Path) -> Path:
    """Every 5-celebrity photo (train and val), one sub-folder per person, as links."""
    for person in sorted(p.name for p in (celebrity_dir / "train").iterdir()):
        (target / person).mkdir(parents=True)
        for part in ("train", "val"):
            for photo in sorted((celebrity_dir / part / person).iterdir()):
                (target / person / f"{part}-{photo.name}").symlink_to(photo)
    return target


def test_sigkills_lose_nothing_reported_and_leave_nothing_behind(crashes, database_url, celebrity_dir, tmp_path):
    kills = plan()["postgresql" if database_url else "sqlite"]
    folder = photo_folder(celebrity_dir, tmp_path / "photos")
    for phase, run in (("import", lambda: imports(crashes, kills["import"], folder)),
                       ("reembed", lambda: reembeds(crashes, kills["reembed"])),
                       ("http", lambda: http_enrollment(crashes, kills["http"], celebrity_dir))):
        started = time.monotonic()
        run()
        crashes.phases.append((phase, time.monotonic() - started))
    assert len(crashes.landings) == 10


def imports(crashes: Crashes, kills: list[Kill], folder: Path) -> None:
    """`facerec import` killed again and again, each run resuming where the last was killed."""
    for kill in kills:
        crashes.note(crashes.run_and_kill("import", kill, "import", str(folder), "--batch-size", "4"))
        crashes.restart()
        crashes.check()
    assert len(crashes.reported) >= 10  # the kills let some work through


def reembeds(crashes: Crashes, kills: list[Kill]) -> None:
    """Every face made stale (as after a model change), then `facerec reindex --reembed` killed again
    and again, each run resuming the last: a face has its stale encoding or the one its kept crop gives."""
    original = {face_id: vector for face_id, (_, _, vector) in read_database(crashes.home).faces.items()}
    assert len(original) >= 12, "too few faces imported for the re-encoding's kills"  # 2 per batch, 4 batches
    engine = make_engine(load_config(home=str(crashes.home)).database)
    with session_factory(engine)() as session, session.begin():
        session.execute(update(FaceRow).values(model_id=STALE_MODEL, encoding=b"\0" * 512))
        bump_generation(session)
    engine.dispose()

    def same_faces_each_once_encoded():
        stored = crashes.check()
        assert set(stored.faces) == set(original)
        for face_id, (_, model, vector) in stored.faces.items():
            if model == crashes.model_id:
                np.testing.assert_allclose(vector, original[face_id], atol=1e-4)
            else:
                assert model == STALE_MODEL and not vector.any()
        return stored

    for kill in kills:
        crashes.run_and_kill("reembed", kill, "reindex", "--reembed", "--batch-size", "2")
        crashes.restart()
        stored = same_faces_each_once_encoded()
    # The last kill lands in the rebuild that follows the re-encoding: every face was re-encoded.
    assert all(model == crashes.model_id for _, model, _ in stored.faces.values())


def http_enrollment(crashes: Crashes, kills: list[Kill], celebrity_dir: Path) -> None:
    """A client uploads photos to POST /v1/people/{id}/faces, three per request, while the worker or
    the whole server is killed; a request cut off is sent again once the server is back."""
    people = sorted(p.name for p in (celebrity_dir / "train").iterdir())
    # Every train photo: with fewer, a fast pipeline ran out of uploads before a timed kill landed.
    requests = [(f"web-{person}", photos[i:i + 3]) for person in people
                for photos in [sorted((celebrity_dir / "train" / person).iterdir())]
                for i in range(0, len(photos), 3)]
    rng = random.Random(SEED)
    rng.shuffle(requests)
    port = free_port()
    env = {"FACEREC_API_KEYS": f"admin:{ADMIN_KEY}", "FACEREC_SERVER__WORKERS": "1"}
    server = serve(crashes, port, env, kills[0])
    for person in people:
        status, body, _ = server.call("POST", "/v1/people", ADMIN_KEY, json_body={"id": f"web-{person}"})
        assert status == 201, body
        crashes.may_be_faceless.add(f"web-{person}")  # created on their own, before any face
    try:
        for number, kill in enumerate(kills):
            if kill.target == "server" and kill.hold:  # a server held as its start saves the index
                if server is not None:
                    stop(server)
                move_generation(crashes.home)  # as another replica's write would: the saved index is behind
                server = serve(crashes, port, env, kill, wait=False)
                crashes.wait_for(kill, server.process, server.process.pid)
                os.killpg(server.process.pid, signal.SIGKILL)
                server.process.wait()
                server.log.close()
                crashes.record("http", kill, server.process.pid)
                server = serve(crashes, port, env, None)
            else:
                if number and kill.hold:
                    raise AssertionError("a worker can be held only by the server's first setting")
                server = upload_until_killed(crashes, server, requests, kill)
                if server is None:  # the whole server was killed: a start is the roster's
                    crashes.restart()
            crashes.check()
    finally:
        if server is not None:
            stop(server)
    assert any(person.startswith("web-") for person in crashes.reported.values())


def move_generation(home: Path) -> None:
    engine = make_engine(load_config(home=str(home)).database)
    with session_factory(engine)() as session, session.begin():
        bump_generation(session)
    engine.dispose()


def serve(crashes: Crashes, port: int, env: dict, kill: Kill | None, wait: bool = True):
    return start_server(crashes.home, port, {**crashes.env(kill), **env}, crashes.project_root,
                        command=[sys.executable, str(PROBE)], wait=wait)


def stop(server) -> None:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(timeout=60)
    server.log.close()


def upload(crashes: Crashes, server, requests: list) -> bool:
    """Send the first request; True once answered (and noted), False if the connection was cut."""
    person, photos = requests[0]
    try:
        status, body, _ = server.call("POST", f"/v1/people/{person}/faces", ADMIN_KEY,
                                      files=[photo_file(p) for p in photos])
    except (OSError, http.client.HTTPException):
        return False
    assert status in (200, 201), body
    crashes.note(body["photos"])
    requests.pop(0)
    return True


def upload_until_killed(crashes: Crashes, server, requests: list, kill: Kill):
    """Upload while a killer thread waits for the planned moment and kills; the server once back up
    (gunicorn starts another worker), or None when the whole server was killed."""
    master = server.process
    worker = worker_of(master.pid)
    killed, failed = threading.Event(), []

    def killer():
        try:
            crashes.wait_for(kill, master, worker if kill.target == "worker" else master.pid)
            if kill.target == "worker":
                os.kill(worker, signal.SIGKILL)
            else:
                os.killpg(master.pid, signal.SIGKILL)
        except BaseException as exc:  # handed to the test's thread
            failed.append(exc)
        killed.set()

    thread = threading.Thread(target=killer)
    thread.start()
    while not killed.is_set():
        assert requests, "the uploads ran out before the kill"
        upload(crashes, server, requests)
    thread.join()
    if failed:
        raise failed[0]
    crashes.record("http", kill, worker)
    if kill.target == "worker":
        wait_ready(server, master, crashes.home)
        assert worker_of(master.pid) != worker
        return server
    master.wait()
    server.log.close()
    return None


def worker_of(master: int) -> int:
    """The pid of the (single) worker process of a gunicorn master."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == master:
                return int(entry.name)
    raise AssertionError(f"no worker under {master}")
