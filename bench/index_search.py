"""Speed and size of the face index (index.FaceIndex) at several sizes; prints a table.

    .venv/bin/python bench/index_search.py [--sizes 10000,100000,1000000] [--queries 200] [--k 10]
                                           [--threads N]

For each size: random unit float32 vectors (seeded, generated in chunks), then the time to build,
save and load the index, the file size, and single-query search latency (p50/p99 over --queries
queries) for the loaded FaceIndex and for a bare faiss.IndexFlatL2 over the same vectors: the
physical floor, without ids, locking or exact-distance refinement. The two take turns on each
query, so load from other processes hits both alike. RSS is the process's resident memory after
the size's run (now) and its peak so far; 1M vectors need about 2 GB (vectors, index, bare index).

--threads sets FAISS's OpenMP threads (default: FAISS's own, one per core). Single queries are
sensitive to it on a busy machine: a query waits for every thread, and one of them may be
descheduled for a whole time slice.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from index import INDEX_FILE, FaceIndex  # noqa: E402

DIM = 128
MODEL_ID = "bench-random-unit-vectors"
GENERATE_CHUNK = 100_000


def unit_vectors(n: int, rng: np.random.Generator, dim: int = DIM) -> np.ndarray:
    """``n`` random unit vectors, made a chunk at a time so float64 temporaries stay small."""
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, GENERATE_CHUNK):
        block = rng.standard_normal((min(GENERATE_CHUNK, n - start), dim), dtype=np.float32)
        out[start:start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def rss_mb() -> tuple[float, float]:
    """(current, peak) resident set size in MB, from /proc/self/status (Linux)."""
    values = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) / 1024
    except OSError:
        import resource
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return float("nan"), peak
    return values.get("VmRSS", float("nan")), values.get("VmHWM", float("nan"))


def timed(fn):
    """(result, seconds) of one call."""
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def latencies_ms(searches: dict, queries: np.ndarray, k: int) -> dict[str, tuple[float, float]]:
    """p50 and p99 of one-query-at-a-time search for each named search function.

    The functions take turns on each query, so load from other processes hits them alike.
    """
    times: dict[str, list[float]] = {name: [] for name in searches}
    for number, query in enumerate(np.concatenate([queries[:5], queries])):
        for name, search in searches.items():
            start = time.perf_counter()
            search(query[None, :], k)
            if number >= 5:  # the first five warm up caches and threads
                times[name].append(time.perf_counter() - start)
    return {name: tuple(float(v) for v in np.percentile(t, [50, 99]) * 1000) for name, t in times.items()}


def measure(n: int, n_queries: int, k: int, workdir: Path) -> dict:
    """Every column of the table for one index size."""
    rng = np.random.default_rng(n)
    vectors = unit_vectors(n, rng)
    ids = np.arange(n, dtype=np.int64)
    queries = unit_vectors(n_queries, rng)

    built, build_s = timed(lambda: FaceIndex.build(ids, vectors))
    directory = workdir / f"n{n}"
    _, save_s = timed(lambda: built.save(directory, generation=1, model_id=MODEL_ID))
    del built  # the loaded copy replaces it
    size_mb = (directory / INDEX_FILE).stat().st_size / 1e6
    loaded, load_s = timed(lambda: FaceIndex.load(directory, model_id=MODEL_ID, generation=1))

    bare = faiss.IndexFlatL2(DIM)
    bare.add(vectors)
    latency = latencies_ms({"ours": loaded.search, "floor": bare.search}, queries, k)
    rss_now, rss_peak = rss_mb()
    return {"n": n, "build": build_s, "save": save_s, "size": size_mb, "load": load_s,
            "ours": latency["ours"], "floor": latency["floor"], "rss": rss_now, "peak": rss_peak}


def print_row(r: dict) -> None:
    print(f"| {r['n']:>9,} | {r['build']:>7.2f} | {r['save']:>7.2f} | {r['size']:>8.1f} | {r['load']:>7.2f} "
          f"| {r['ours'][0]:>7.2f} | {r['ours'][1]:>7.2f} | {r['floor'][0]:>8.2f} | {r['floor'][1]:>8.2f} "
          f"| {r['rss']:>7.0f} | {r['peak']:>7.0f} |", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated index sizes")
    parser.add_argument("--queries", type=int, default=200, help="single queries timed per size")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="FAISS OpenMP threads")
    parser.add_argument("--dir", type=Path, default=None, help="where to save (default: a temporary folder)")
    args = parser.parse_args(argv)
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    if args.threads:
        faiss.omp_set_num_threads(args.threads)

    print(f"facerec index: FaceIndex (IndexIDMap2 over IndexFlatL2, dim {DIM}) vs bare IndexFlatL2; "
          f"faiss {faiss.__version__}, {os.cpu_count()} cores, {faiss.omp_get_max_threads()} OpenMP threads; "
          f"{args.queries} single queries, k={args.k}")
    print("|   vectors | build s |  save s |  file MB |  load s |  p50 ms |  p99 ms | flat p50 | flat p99 "
          "|  RSS MB | peak MB |")
    print("|-----------|---------|---------|----------|---------|---------|---------|----------|----------"
          "|---------|---------|")
    with tempfile.TemporaryDirectory(prefix="facerec-index-bench-", dir=args.dir) as workdir:
        for n in sizes:
            print_row(measure(n, args.queries, args.k, Path(workdir)))


if __name__ == "__main__":
    main()
