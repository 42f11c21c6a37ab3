"""Two replicas behind nginx (deploy/nginx.conf), one killed mid-run: do identifies fail? Prints a table.

    .venv/bin/python bench/replicas_nginx.py [--seconds 30] [--clients 4]

Starts a throwaway PostgreSQL server, two `facerec serve` replicas on it (their own homes and ports,
one worker each), enrolls the 5-celebrity train photos through the first, and runs nginx with
deploy/nginx.conf as shipped but for its ports. CLIENTS threads then identify a val photo through
nginx for SECONDS; a third of the way in, the second replica's whole process group is killed
(SIGKILL: a host dying). Needs nginx (Debian: apt-get install nginx).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the throwaway PostgreSQL server and the HTTP client of the tests

from http_client import Client, free_port, photo_file, running_server  # noqa: E402
from nginx_front import running_nginx  # noqa: E402
from postgres import PostgresServer  # noqa: E402

ADMIN, CLIENT = "admin-" + uuid.uuid4().hex, "client-" + uuid.uuid4().hex
CELEBRITIES = ROOT / "models" / "data" / "5-celebrity"
PROBE_PERSON = "mindy_kaling"


def enroll_celebrities(replica: Client) -> int:
    accepted = 0
    for person_dir in sorted((CELEBRITIES / "train").iterdir()):
        replica.call("POST", "/v1/people", ADMIN, json_body={"id": person_dir.name})
        photos = sorted(person_dir.iterdir())
        for start in range(0, len(photos), 6):
            status, body, _ = replica.call("POST", f"/v1/people/{person_dir.name}/faces", ADMIN,
                                           files=[photo_file(p) for p in photos[start:start + 6]])
            accepted += body["accepted"]
    return accepted


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    if shutil.which("nginx") is None:
        print("nginx not found: install it (Debian: apt-get install nginx)", file=sys.stderr)
        return 2
    probe = sorted((CELEBRITIES / "val" / PROBE_PERSON).iterdir())[1]
    database = PostgresServer.start()
    scratch = Path(tempfile.mkdtemp(prefix="facerec-nginx-bench-"))
    try:
        env = {"FACEREC_DATABASE_URL": database.new_database(), "FACEREC_API_KEYS": f"admin:{ADMIN},client:{CLIENT}",
               "FACEREC_SERVER__WORKERS": "1"}
        (scratch / "a").mkdir(), (scratch / "b").mkdir()
        port_a, port_b, listen = free_port(), free_port(), free_port()
        with running_server(scratch / "a", port_a, env, ROOT) as a, running_server(scratch / "b", port_b, env, ROOT) as b:
            faces = enroll_celebrities(a)
            with running_nginx(scratch / "nginx", listen, [port_a, port_b]):
                results = run_clients(Client(listen), probe, args.clients, args.seconds, b)
        report(results, faces, args)
        return 0 if not any(r["status"] != 200 for r in results) else 1
    finally:
        database.stop()
        shutil.rmtree(scratch, ignore_errors=True)


def run_clients(front: Client, probe: Path, clients: int, seconds: float, victim: Client) -> list[dict]:
    results, lock = [], threading.Lock()
    started = time.monotonic()
    stop_at = started + seconds
    killed_at = [None]

    def ask():
        photo = [photo_file(probe)]
        while time.monotonic() < stop_at:
            sent = time.monotonic()
            try:
                status, body, _ = front.call("POST", "/v1/identify", CLIENT, files=photo)
                match = body["faces"][0]["match"] if status == 200 else None
            except OSError:
                status, match = "connection", None
            with lock:
                results.append({"at": sent - started, "seconds": time.monotonic() - sent, "status": status,
                                "match": match, "after_kill": killed_at[0] is not None and sent >= killed_at[0]})

    threads = [threading.Thread(target=ask) for _ in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(seconds / 3)
    os.killpg(victim.process.pid, signal.SIGKILL)  # the second replica's host dies
    killed_at[0] = time.monotonic() - started
    for thread in threads:
        thread.join()
    return results


def report(results: list[dict], faces: int, args) -> None:
    print(f"facerec behind nginx: 2 replicas (1 worker each) on one PostgreSQL database, {faces} faces; "
          f"{args.clients} clients identify for {args.seconds:g} s; replica 2 killed (SIGKILL, process group) "
          f"at {args.seconds / 3:.0f} s")
    print("| phase | requests | failed | wrong answer | p50 ms | p99 ms | requests/s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for phase, rows in (("both replicas", [r for r in results if not r["after_kill"]]),
                        ("after the kill", [r for r in results if r["after_kill"]])):
        if not rows:
            continue
        seconds = sorted(r["seconds"] for r in rows)
        span = max(r["at"] + r["seconds"] for r in rows) - min(r["at"] for r in rows)
        failed = sum(r["status"] != 200 for r in rows)
        wrong = sum(r["status"] == 200 and r["match"] not in (PROBE_PERSON, None) for r in rows)
        print(f"| {phase} | {len(rows)} | {failed} | {wrong} | {statistics.median(seconds) * 1000:.0f} | "
              f"{seconds[min(len(seconds) - 1, int(0.99 * len(seconds)))] * 1000:.0f} | {len(rows) / span:.1f} |")


if __name__ == "__main__":
    sys.exit(main())
