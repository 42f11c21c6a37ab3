"""The roster (service.roster.roster.Roster: database + FAISS index) at several sizes; prints a table.

    .venv/bin/python bench/roster_scale.py [--sizes 10000,100000,1000000] [--threads 1]

Synthetic unit float32 128-d encodings stand in for photos (the index does not care where vectors
come from). For each roster size N (faces), in a fresh temporary data home:

1. import: create the database (Alembic upgrade), then N faces of N/5 people (5 faces each,
   external ids "E0000001"...) with SQLAlchemy Core bulk inserts, CHUNK rows per transaction, and
   one generation bump at the end: seconds and faces/s;
2. database size after a WAL checkpoint (file + -wal), bytes per face, and the overhead beyond the
   512-byte encoding;
3. reindex: Roster(config, model) and its first index load (which, finding no index, builds it:
   "open s"), then the timed ``roster.rebuild_index()`` -- the ``facerec reindex`` path: seconds,
   vectors/s, index file size;
4. identify latency: PROBES single probes (half random, half near-duplicates of enrolled faces),
   each through the application's ``recognition.nearest_people(probe, 5, roster)`` (index search,
   owners from the database, people ranked by nearest face) and through a bare faiss.IndexFlatL2 over
   the same vectors (k = config.index_k): p50/p99 and the ratio of the p50s (target <= 1.5). The
   two take turns on each probe, so load from other processes hits both alike. "top1" counts the
   near-duplicate probes whose best candidate is the person they were made from;
5. RSS now and the process's peak so far (ru_maxrss).

--threads sets FAISS's OpenMP threads (default 1: single-query latency on a small, busy box is
much better with one thread; see bench/index_search.py).
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from index import INDEX_FILE  # noqa: E402
from service.app import Facerec  # noqa: E402
from service.config import load_config  # noqa: E402
from service.roster.database import make_engine  # noqa: E402
from service.roster.roster import Roster  # noqa: E402
from synthetic_roster import CHUNK, DIM, external_id, unit_chunks, write_roster  # noqa: E402

MODEL_ID = "bench-model"
FACES_PER_PERSON = 5
PROBES = 200
TOP = 5
NEAR_NOISE = 0.3  # expected L2 distance of a near-duplicate probe from its enrolled face


def rss_mb() -> tuple[float, float]:
    """(current, peak) resident set size in MB: /proc/self/status VmRSS, getrusage ru_maxrss."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    now = float("nan")
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                now = int(line.split()[1]) / 1024
    except OSError:
        pass
    return now, peak


def database_bytes(database: str) -> int:
    """The SQLite file's size plus its -wal, after a checkpoint that empties the WAL."""
    engine = make_engine(database)
    try:
        with engine.connect() as connection:
            connection.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
        path = Path(engine.url.database)
    finally:
        engine.dispose()
    wal = path.with_name(path.name + "-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def bare_index(n: int, seed: int) -> faiss.IndexFlatL2:
    """A bare flat L2 index over the same vectors as the roster (regenerated from the seed)."""
    bare = faiss.IndexFlatL2(DIM)
    for vectors in unit_chunks(n, seed):
        bare.add(vectors)
    return bare


def make_probes(bare: faiss.IndexFlatL2, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """PROBES unit probes, the second half near-duplicates of enrolled faces; and, for each probe,
    the 0-based row it was made from (-1 for the random ones)."""
    rng = np.random.default_rng(seed + 2)
    half = PROBES // 2
    random_ = next(unit_chunks(PROBES - half, seed + 3))
    rows = rng.choice(n, half, replace=False)
    base = np.stack([bare.reconstruct(int(r)) for r in rows])
    noisy = base + rng.standard_normal(base.shape, dtype=np.float32) * (NEAR_NOISE / np.sqrt(DIM))
    noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
    probes = np.ascontiguousarray(np.concatenate([random_, noisy]), np.float32)
    return probes, np.concatenate([np.full(PROBES - half, -1), rows])


def latencies(core: Facerec, roster: Roster, bare: faiss.IndexFlatL2, probes: np.ndarray, sources: np.ndarray,
              k: int) -> dict:
    """p50/p99 (ms) of one-probe-at-a-time nearest_people and bare search, taking turns."""
    ours, floor, hits = [], [], 0
    warm = 5
    for number, (probe, source) in enumerate(zip(np.concatenate([probes[:warm], probes]),
                                                 np.concatenate([sources[:warm], sources]))):
        t0 = time.perf_counter()
        candidates = core.recognition.nearest_people(probe, TOP, roster)
        t1 = time.perf_counter()
        bare.search(probe[None, :], k)
        t2 = time.perf_counter()
        if number < warm:
            continue
        ours.append(t1 - t0)
        floor.append(t2 - t1)
        if source >= 0 and candidates and candidates[0].person == external_id(source // FACES_PER_PERSON + 1):
            hits += 1
    p_ours = np.percentile(ours, [50, 99]) * 1000
    p_floor = np.percentile(floor, [50, 99]) * 1000
    return {"ours": p_ours, "floor": p_floor, "ratio": p_ours[0] / p_floor[0],
            "top1": f"{hits}/{int((sources >= 0).sum())}"}


def opened(config) -> Roster:
    roster = Roster(config, MODEL_ID)
    roster.index.load()
    return roster


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def measure(n: int) -> dict:
    """Every column of the table for one roster size, in its own temporary data home."""
    seed = n
    with tempfile.TemporaryDirectory(prefix="facerec-roster-bench-") as home:
        config = load_config(home=str(home))
        import_s = write_roster(config.database, n, seed, MODEL_ID, FACES_PER_PERSON)
        db_bytes = database_bytes(config.database)

        roster, open_s = timed(lambda: opened(config))
        _, reindex_s = timed(roster.rebuild_index)
        assert roster.searchable_faces() == n, f"index holds {roster.searchable_faces()} of {n} faces"
        index_mb = (config.index_dir / INDEX_FILE).stat().st_size / 1e6

        bare = bare_index(n, seed)
        probes, sources = make_probes(bare, n, seed)
        core = Facerec(config)  # the application's ranking rule; its own roster and model stay unopened
        latency = latencies(core, roster, bare, probes, sources, config.index_k)
        rss_now, rss_peak = rss_mb()
        roster.close()
        del roster, bare, probes
        gc.collect()
    per_face = db_bytes / n
    return {"n": n, "import": import_s, "db": db_bytes / 1e6, "per_face": per_face, "overhead": per_face - 512,
            "open": open_s, "reindex": reindex_s, "index": index_mb, **latency, "rss": rss_now, "peak": rss_peak}


HEADER = ("|     faces | import s |  faces/s |  DB MB | B/face | overhead B |  open s | reindex s |   vec/s "
          "| index MB | roster p50 | roster p99 | flat p50 | flat p99 | p50 ratio |    top1 |  RSS MB | peak MB |")


def print_row(r: dict) -> None:
    print(f"| {r['n']:>9,} | {r['import']:>8.1f} | {r['n'] / r['import']:>8,.0f} | {r['db']:>6.1f} "
          f"| {r['per_face']:>6.0f} | {r['overhead']:>10.0f} | {r['open']:>7.2f} | {r['reindex']:>9.2f} "
          f"| {r['n'] / r['reindex']:>7,.0f} | {r['index']:>8.1f} | {r['ours'][0]:>10.2f} | {r['ours'][1]:>10.2f} "
          f"| {r['floor'][0]:>8.2f} | {r['floor'][1]:>8.2f} | {r['ratio']:>9.2f} | {r['top1']:>7} "
          f"| {r['rss']:>7.0f} | {r['peak']:>7.0f} |", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated roster sizes (faces)")
    parser.add_argument("--threads", type=int, default=1, help="FAISS OpenMP threads (default 1)")
    args = parser.parse_args(argv)
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    faiss.omp_set_num_threads(args.threads)

    print(f"facerec roster: SQLite + FaceIndex via service.roster.roster.Roster; faiss {faiss.__version__}, "
          f"{os.cpu_count()} cores, {faiss.omp_get_max_threads()} OpenMP thread(s); {FACES_PER_PERSON} faces "
          f"per person, {CHUNK:,} rows per import transaction; {PROBES} single probes "
          f"(half near-duplicates), nearest_people top={TOP}, flat k=index.k")
    print(HEADER)
    print("|" + "|".join("-" * len(cell) for cell in HEADER.split("|")[1:-1]) + "|")
    for n in sizes:
        print_row(measure(n))
        gc.collect()


if __name__ == "__main__":
    main()
