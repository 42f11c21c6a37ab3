"""Load test of the HTTP service on loopback: requests/s and latency p50/p99 for identify and verify,
and the memory the serving processes hold.

For each roster size it starts `facerec serve` on a fresh data home and a free loopback port, fills
the roster with synthetic encodings (random unit vectors written straight into the database, spread
over people of 10 faces each) plus the real 5-celebrity train photos enrolled through the API, then
runs 1, 4 and 16 concurrent clients against /v1/identify and /v1/verify for a fixed time each.

    .venv/bin/python bench/http_load.py --faces 1000 100000 --clients 1 4 16 --seconds 10

Set-ups compared side by side: each ``--setup "name: KEY=VALUE KEY=VALUE"`` is a server with those
FACEREC_* settings. All of them start together (an idle server costs nothing) and the cells alternate
between them, so whatever else the machine does weighs on each alike:

    .venv/bin/python bench/http_load.py --faces 1000000 \
        --setup "before: FACEREC_MODEL__RUNTIME=tensorflow FACEREC_SERVER__WORKERS=2 FACEREC_SERVER__THREADS=4" \
        --setup "after: "

``PYTHONPATH=DIR`` in a set-up serves another checkout's code (and its config.yaml), such as the
commit before a change (`git worktree add ../before COMMIT`, with `models/` linked to this one's).

Memory is read after the load from /proc: RSS and PSS summed over the server's processes (gunicorn's
master and workers). PSS counts a page shared by n processes as 1/n in each, so its sum is what the
set-up really holds.

CPU is read for each cell from /proc too: the server's CPU seconds (user + system, all its processes)
per answered request, the cores that kept busy on average ("cores busy": at the machine's core count
a set-up is bound by computation, and only a cheaper request serves more), and this load generator's
own CPU per request, which the server does not get on the same machine.

Loopback only; every run is bounded by --seconds per cell plus server start-up.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import io
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path


PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

CELEBRITIES = PROJECT_ROOT / "models" / "data" / "5-celebrity"
PROBE_PERSON = "mindy_kaling"
FACES_PER_SYNTHETIC_PERSON = 10


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=int, nargs="+", default=[1000], help="synthetic faces per roster")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each (endpoint, clients) cell")
    parser.add_argument("--setup", action="append", type=_setup, metavar='"NAME: KEY=VALUE ..."',
                        help="a server set-up to compare (repeatable); default: the configuration as it is")
    parser.add_argument("--endpoints", nargs="+", default=["identify", "verify"], choices=["identify", "verify"])
    args = parser.parse_args()
    setups = args.setup or [("configured", {})]
    probe = sorted((CELEBRITIES / "val" / PROBE_PERSON).iterdir())[1]
    print(f"probe photo: {probe.name[:40]}... ({_size(probe)}), {os.cpu_count()} cores, "
          f"{args.seconds:.0f} s per cell")
    for name, env in setups:
        print(f"set-up {name}: {' '.join(f'{k}={v}' for k, v in env.items()) or 'config.yaml as it is'}")
    print("| roster faces | set-up | endpoint | clients | requests/s | p50 ms | p99 ms | errors "
          "| server CPU ms/req | cores busy | load CPU ms/req |")
    print("|-------------:|--------|----------|--------:|-----------:|-------:|-------:|-------:"
          "|------------------:|-----------:|----------------:|")
    memory = []
    for faces in args.faces:
        with contextlib.ExitStack() as stack:
            servers = []
            for name, env in setups:
                home = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="facerec-bench-")))
                servers.append((name, stack.enter_context(Server(home, faces, env))))
            total = faces + [server.enroll_celebrities() for _, server in servers][0]
            for endpoint in args.endpoints:
                for clients in args.clients:
                    for name, server in servers:
                        row = run_cell(server, endpoint, probe.read_bytes(), clients, args.seconds)
                        print(f"| {total:>12,} | {name} | {endpoint:<8} | {clients:>7} | {row['rps']:>10.1f} | "
                              f"{row['p50']:>6.0f} | {row['p99']:>6.0f} | {row['errors']:>6} | "
                              f"{row['server_cpu']:>17.1f} | {row['busy']:>10.2f} | {row['load_cpu']:>15.1f} |",
                              flush=True)
            memory += [(total, name, server.memory()) for name, server in servers]
    print("\n| roster faces | set-up | processes | RSS sum MB | PSS sum MB |")
    print("|-------------:|--------|----------:|-----------:|-----------:|")
    for total, name, (processes, rss, pss) in memory:
        print(f"| {total:>12,} | {name} | {processes:>9} | {rss / 2**20:>10,.0f} | {pss / 2**20:>10,.0f} |")
    return 0


def _setup(text: str) -> tuple[str, dict]:
    name, _, settings = text.partition(":")
    env = dict(item.split("=", 1) for item in settings.split())
    if not name.strip() or any(not (k.startswith("FACEREC_") or k == "PYTHONPATH") for k in env):
        raise argparse.ArgumentTypeError(f"{text!r}: expected 'name: FACEREC_KEY=VALUE ...'")
    return name.strip(), env


class Server:
    """`facerec serve` on a fresh home, with ``faces`` synthetic faces written to its database first."""

    def __init__(self, home: Path, faces: int = 0, env: dict | None = None):
        self.home, self.env = home, env or {}
        self.admin, self.client = uuid.uuid4().hex, uuid.uuid4().hex
        self.port = _free_port()
        self.faces = faces

    def __enter__(self) -> "Server":
        env = {**os.environ, "FACEREC_API_KEYS": f"admin:{self.admin},client:{self.client}",
               "TF_CPP_MIN_LOG_LEVEL": "2", **self.env}
        if self.faces:  # before the start, so every worker builds its index from them
            add_synthetic_faces(self.home, self.faces, env)
        self.log = open(self.home / "server.log", "wb")
        facerec = Path(sys.executable).parent / "facerec"
        self.process = subprocess.Popen([str(facerec), "serve", "--home", str(self.home), "--port", str(self.port)],
                                        env=env, stdout=self.log, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT)
        self._wait_ready()
        return self

    def __exit__(self, *exc) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()

    def _wait_ready(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"server exited:\n{(self.home / 'server.log').read_text()[-2000:]}")
            try:
                if request(self.port, "GET", "/readyz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise SystemExit("server not ready in time")

    def memory(self) -> tuple[int, int, int]:
        """(processes, RSS bytes, PSS bytes) summed over the server and its descendants."""
        pids, rss, pss = _descendants(self.process.pid), 0, 0
        for pid in pids:
            try:
                for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1]) * 1024
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1]) * 1024
            except OSError:  # gone meanwhile
                pass
        return len(pids), rss, pss

    def cpu_seconds(self) -> float:
        """CPU time (user + system) used so far by the server and its descendants."""
        ticks = 0
        for pid in _descendants(self.process.pid):
            try:  # fields 14 and 15 of /proc/PID/stat, counted after the command's closing parenthesis
                fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
                ticks += int(fields[11]) + int(fields[12])
            except (OSError, IndexError, ValueError):  # gone meanwhile
                pass
        return ticks / os.sysconf("SC_CLK_TCK")

    def enroll_celebrities(self) -> int:
        """The real celebrities' train photos, through the API; returns the faces accepted."""
        accepted = 0
        for person_dir in sorted((CELEBRITIES / "train").iterdir()):
            request(self.port, "POST", "/v1/people", self.admin, *_json({"id": person_dir.name}))
            photos = sorted(person_dir.iterdir())
            for start in range(0, len(photos), 6):
                files = [("photo", p.name, p.read_bytes()) for p in photos[start:start + 6]]
                status, body = request(self.port, "POST", f"/v1/people/{person_dir.name}/faces", self.admin,
                                       *_multipart(files, {}))
                accepted += json.loads(body)["accepted"]
        return accepted


def _descendants(pid: int) -> list[int]:
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            children = []
        queue += [int(c) for c in children]
    return found


def add_synthetic_faces(home: Path, faces: int, env: dict, seed: int = 0) -> None:
    """Random unit encodings under this configuration's model id, straight into a new database."""
    from service.config import load_config
    from service.pipeline.model_id import configured_model_id
    from synthetic_roster import write_roster

    config = load_config(env=env, home=str(home))
    write_roster(config.database, faces, seed, configured_model_id(config), FACES_PER_SYNTHETIC_PERSON)


def run_cell(server: Server, endpoint: str, photo: bytes, clients: int, seconds: float) -> dict:
    """``clients`` threads, each on its own keep-alive connection, for ``seconds``."""
    fields = {"person": PROBE_PERSON} if endpoint == "verify" else {"top_k": "3"}
    body, content_type = _multipart([("photo", "probe.jpg", photo)], fields)
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        mine, failed = [], 0
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            try:
                conn.request("POST", f"/v1/{endpoint}", body=body,
                             headers={"X-API-Key": server.client, "Content-Type": content_type})
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
            except OSError:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
                ok = False
            if ok:
                mine.append(time.perf_counter() - started)
            else:
                failed += 1
        conn.close()
        with lock:
            latencies.extend(mine)
            errors[0] += failed

    threads = [threading.Thread(target=client) for _ in range(clients)]
    server_cpu, load_cpu = server.cpu_seconds(), time.process_time()
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    server_cpu, load_cpu = server.cpu_seconds() - server_cpu, time.process_time() - load_cpu
    ms = sorted(x * 1000 for x in latencies) or [float("nan")]
    answered = max(len(latencies), 1)
    return {"rps": len(latencies) / elapsed, "p50": statistics.median(ms),
            "p99": ms[min(len(ms) - 1, int(round(0.99 * (len(ms) - 1))))], "errors": errors[0],
            "server_cpu": 1000 * server_cpu / answered, "busy": server_cpu / elapsed,
            "load_cpu": 1000 * load_cpu / answered}


def request(port: int, method: str, path: str, key: str | None = None, body: bytes | None = None,
            content_type: str | None = None) -> tuple[int, bytes]:
    headers = {"X-API-Key": key} if key else {}
    if content_type:
        headers["Content-Type"] = content_type
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _json(payload: dict) -> tuple[bytes, str]:
    return json.dumps(payload).encode(), "application/json"


def _multipart(files: list[tuple[str, str, bytes]], fields: dict) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    out = io.BytesIO()
    for name, value in fields.items():
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for field, filename, data in files:
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
                  "Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _size(path: Path) -> str:
    from PIL import Image

    with Image.open(path) as image:
        return f"{image.width}x{image.height}"


if __name__ == "__main__":
    sys.exit(main())
