"""A replica starting against a large roster, on SQLite and on PostgreSQL side by side; prints a table.

    .venv/bin/python bench/replica_start.py [--faces 1000000] [--workers 1 2] [--probes 30]

For each database it writes FACES synthetic faces (random unit encodings under the configured model
id, 5 per person) into a fresh roster: the import rate. Then, for each worker count, it starts
`facerec serve` on a fresh data home (nothing on disk but the keys: a replica on a new host) and
times the first `/readyz` 200 (the first worker ready), then, SETTLE seconds later (every worker
loaded), asks PROBES identifies of a 300x300 photo one at a time: p50 and p99. PostgreSQL is a throwaway server of the bench's own (the test suite's, tests/postgres.py).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the throwaway PostgreSQL server and the HTTP client of the tests

from http_client import Client, free_port, running_server  # noqa: E402
from postgres import PostgresServer  # noqa: E402
from service.config import load_config  # noqa: E402
from service.pipeline.model_id import configured_model_id  # noqa: E402
from synthetic_roster import write_roster  # noqa: E402

KEY = "client-" + uuid.uuid4().hex
SETTLE = 15
PROBE = sorted((ROOT / "models" / "data" / "5-celebrity" / "val" / "madonna").iterdir())[0]


def identify_latencies(client: Client, probes: int) -> tuple[float, float]:
    photo = [("photo", PROBE.name, PROBE.read_bytes())]
    client.call("POST", "/v1/identify", KEY, files=photo)  # warm-up
    seconds = []
    for _ in range(probes):
        started = time.perf_counter()
        status, body, _ = client.call("POST", "/v1/identify", KEY, files=photo)
        seconds.append(time.perf_counter() - started)
        assert status == 200, body
    seconds.sort()
    return statistics.median(seconds) * 1000, seconds[min(len(seconds) - 1, int(0.99 * len(seconds)))] * 1000


def measure(label: str, database: str, faces: int, workers: list[int], probes: int) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="facerec-replica-bench-") as scratch:
        config = load_config(home=scratch, database_url=database)
        import_s = write_roster(config.database, faces, 0, configured_model_id(config), 5)
        rows = []
        for count in workers:
            home = Path(scratch) / f"replica-{count}"
            home.mkdir()
            env = {"FACEREC_DATABASE_URL": config.database, "FACEREC_API_KEYS": f"client:{KEY}",
                   "FACEREC_SERVER__WORKERS": str(count)}
            started = time.perf_counter()
            with running_server(home, free_port(), env, ROOT) as client:
                ready = time.perf_counter() - started
                time.sleep(SETTLE)  # the other workers may still be loading: latency once they are done
                p50, p99 = identify_latencies(client, probes)
            rows.append(f"| {label} | {faces:,} | {faces / import_s:,.0f} | {count} | {ready:.1f} | {p50:.0f} | "
                        f"{p99:.0f} |")
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--probes", type=int, default=30)
    args = parser.parse_args()
    print(f"facerec replica start: {os.cpu_count()} cores; a fresh data home per start; identify of a "
          f"{PROBE.name[:30]}... photo, {args.probes} requests one at a time, {SETTLE} s after ready")
    print("| database | faces | import faces/s | workers | ready s | identify p50 ms | identify p99 ms |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    measure("SQLite", "", args.faces, args.workers, args.probes)
    server = PostgresServer.start()
    try:
        measure("PostgreSQL", server.new_database(), args.faces, args.workers, args.probes)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
