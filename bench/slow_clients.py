"""Can stalled clients starve the service? /healthz and identify latency with and without them. Prints a table.

    .venv/bin/python bench/slow_clients.py [--seconds 20] [--stalled 50] [--dribble 2]

Starts `facerec serve` (2 workers, the configured threads) on a fresh SQLite home with a small roster
(3 train photos of each 5-celebrity person, enrolled through the API), and nginx in front of it with
deploy/nginx.conf (its request buffering and timeouts) on ports of its own. For each front, (a) clients
straight to gunicorn, (b) the same through nginx, it probes for SECONDS without stalled clients, then
for SECONDS with STALLED of them: one probe loop calls GET /healthz, another POST /v1/identify with a
real photo, each one request at a time on a fresh connection, with a 10 s timeout (a failure).

The stalled clients are a mix, in equal thirds: part of a request head, then nothing; a whole head
announcing a 100 KB body, then one body byte every DRIBBLE seconds; a connection and no byte at all.
A stalled client the server hangs up on is replaced by a new one at once, so STALLED stay open.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the HTTP client and server runner of the tests

from http_client import Client, free_port, multipart, photo_file, running_server  # noqa: E402
from nginx_front import running_nginx  # noqa: E402

ADMIN, CLIENT = "admin-" + uuid.uuid4().hex, "client-" + uuid.uuid4().hex
CELEBRITIES = ROOT / "models" / "data" / "5-celebrity"
PROBE_PERSON = "mindy_kaling"
PROBE_TIMEOUT = 10.0  # seconds: a probe not answered by then is a failure
KINDS = ("part of the head", "body dribbled", "nothing sent")


class StalledClients:
    """COUNT connections to PORT that never finish a request, each reopened when the server drops it."""

    def __init__(self, port: int, count: int, dribble: float):
        self.port, self.dribble = port, dribble
        self.stop = threading.Event()
        self.dropped = {kind: 0 for kind in KINDS}  # connections the server hung up on, by kind
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._hold, args=(KINDS[i % 3],), daemon=True) for i in range(count)]

    def __enter__(self) -> "StalledClients":
        for thread in self.threads:
            thread.start()
        time.sleep(1)  # let them connect and send what they send before the probes start
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=self.dribble + 5)

    def _hold(self, kind: str) -> None:
        while not self.stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
                    if kind == "part of the head":
                        sock.sendall(b"POST /v1/identify HTTP/1.1\r\nHost: x\r\nX-API-Key: ")
                    elif kind == "body dribbled":
                        sock.sendall(b"POST /v1/identify HTTP/1.1\r\nHost: x\r\nX-API-Key: " + CLIENT.encode() +
                                     b"\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                                     b"Content-Length: 100000\r\n\r\n--b\r\n")
                    self._wait_for_hang_up(sock, kind)
            except OSError:
                pass  # refused, reset or hung up on: count it and come back
            if not self.stop.is_set():
                with self.lock:
                    self.dropped[kind] += 1

    def _wait_for_hang_up(self, sock: socket.socket, kind: str) -> None:
        """Until the bench stops or the server closes the connection (or answers: a request that ended)."""
        sock.settimeout(self.dribble)
        while not self.stop.is_set():
            try:
                sock.recv(4096)  # a hang-up, or an answer: either way this stalled request is over
                return
            except (TimeoutError, socket.timeout):
                if kind == "body dribbled":
                    sock.sendall(b"x")


def probe_loop(port: int, kind: str, photo: bytes, seconds: float, results: list) -> None:
    """One request at a time for SECONDS, each on a new connection: (latency s, status or error)."""
    body, content_type = multipart([("photo", "probe.jpg", photo)], {})
    stop_at = time.monotonic() + seconds
    while time.monotonic() < stop_at:
        started = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=PROBE_TIMEOUT)
        try:
            if kind == "healthz":
                conn.request("GET", "/healthz")
            else:
                conn.request("POST", "/v1/identify", body=body,
                             headers={"X-API-Key": CLIENT, "Content-Type": content_type})
            response = conn.getresponse()
            response.read()
            outcome = response.status
        except (TimeoutError, socket.timeout):
            outcome = "timeout"
        except OSError as exc:
            outcome = type(exc).__name__
        finally:
            conn.close()
        results.append((time.monotonic() - started, outcome))
        time.sleep(0.1)


def measure(port: int, photo: bytes, seconds: float) -> dict[str, list]:
    results = {"healthz": [], "identify": []}
    threads = [threading.Thread(target=probe_loop, args=(port, kind, photo, seconds, rows))
               for kind, rows in results.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def summary(rows: list) -> str:
    """'n | p50 | p95 | max | failed' cells, milliseconds."""
    if not rows:
        return "0 | - | - | - | -"
    seconds = sorted(latency for latency, _ in rows)
    p95 = seconds[min(len(seconds) - 1, int(round(0.95 * (len(seconds) - 1))))]
    failed = [outcome for _, outcome in rows if outcome != 200]
    kinds = sorted({str(outcome) for outcome in failed})
    return (f"{len(rows)} | {statistics.median(seconds) * 1000:.0f} | {p95 * 1000:.0f} | {seconds[-1] * 1000:.0f} | "
            f"{len(failed)}{' (' + ', '.join(kinds) + ')' if failed else ''}")


def enroll(server: Client) -> int:
    accepted = 0
    for person_dir in sorted((CELEBRITIES / "train").iterdir()):
        server.call("POST", "/v1/people", ADMIN, json_body={"id": person_dir.name})
        photos = sorted(person_dir.iterdir())[:3]
        status, body, _ = server.call("POST", f"/v1/people/{person_dir.name}/faces", ADMIN,
                                      files=[photo_file(p) for p in photos])
        accepted += body["accepted"] if status in (200, 201) else 0
    return accepted


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20, help="probing time of each row")
    parser.add_argument("--stalled", type=int, default=50, help="stalled connections held open")
    parser.add_argument("--dribble", type=float, default=2, help="seconds between two dribbled body bytes")
    args = parser.parse_args()
    if shutil.which("nginx") is None:
        print("nginx not found: install it (Debian: apt-get install nginx)", file=sys.stderr)
        return 2
    photo = sorted((CELEBRITIES / "val" / PROBE_PERSON).iterdir())[1].read_bytes()
    scratch = Path(tempfile.mkdtemp(prefix="facerec-slow-bench-"))
    rows = []
    try:
        env = {"FACEREC_API_KEYS": f"admin:{ADMIN},client:{CLIENT}", "FACEREC_SERVER__WORKERS": "2",
               "FACEREC_DATABASE_URL": ""}
        (scratch / "home").mkdir()
        port, listen = free_port(), free_port()
        with running_server(scratch / "home", port, env, ROOT) as server:
            faces = enroll(server)
            with running_nginx(scratch / "nginx", listen, [port]):
                for front, target in (("(a) gunicorn", port), ("(b) nginx", listen)):
                    rows.append((front, 0, measure(target, photo, args.seconds), None))
                    print(f"{front}, no stalled clients: done", file=sys.stderr, flush=True)
                    with StalledClients(target, args.stalled, args.dribble) as stalled:
                        rows.append((front, args.stalled, measure(target, photo, args.seconds), stalled.dropped))
                    print(f"{front}, {args.stalled} stalled clients: done", file=sys.stderr, flush=True)
        report(rows, faces, args)
        return 0
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def report(rows: list, faces: int, args) -> None:
    from service.config import load_config

    server = load_config().server
    print(f"facerec serve: 2 workers of {server.threads} threads, request_timeout {server.request_timeout:g} s, "
          f"{faces} faces; {os.cpu_count()} cores; "
          f"probes one at a time for {args.seconds:g} s per row, {PROBE_TIMEOUT:g} s timeout; stalled clients in "
          f"thirds ({', '.join(KINDS)}), a body byte every {args.dribble:g} s; ms")
    print("| front | stalled | healthz n | p50 | p95 | max | failed | identify n | p50 | p95 | max | failed | "
          "stalled hung up on (head / body / nothing) |")
    print("|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---|---|")
    for front, count, results, dropped in rows:
        hung_up = " / ".join(str(dropped[kind]) for kind in KINDS) if dropped else "-"
        print(f"| {front} | {count} | {summary(results['healthz'])} | {summary(results['identify'])} | {hung_up} |")


if __name__ == "__main__":
    sys.exit(main())
