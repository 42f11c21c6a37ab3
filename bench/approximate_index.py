"""Flat against hnsw (index.kind) on synthetic faces whose distances look like FaceNet's; prints tables.

    .venv/bin/python bench/approximate_index.py [--sizes 100000,1000000] [--ef-search 256,384,768]
        [--m 32] [--ef-construction 80] [--probes 2000] [--queries 200] [--threads 2]
        [--real models/data/5-celebrity/train models/data/5-celebrity/val] [--real ../shared/data/lfw/pairs.txt]

The faces are people as clusters (tests/clustered_faces.py: 5 faces per person), not uniform random
vectors. First, the distances they give beside real encodings': same-person pairs, different-person
pairs, and each photo's nearest other person in a roster of the real set's size. A --real photo set
must have been encoded by `facerec evaluate` already (its cache under FACEREC_HOME, or the config's
home): this bench never loads the model.

Then, for each size N, side by side in one process, each index built from the same N faces (ids
0..N-1), one after the other (the flat one is freed before the graph is built):

- build s (FaceIndex.build: what `facerec reindex` does after reading the database), faces/s, and
  the saved file's bytes per face and load s (what a server worker reads at start);
- RSS B/face: the process's resident anonymous memory after the build minus before, per face (the
  faces themselves are in a memory-mapped file, not counted);
- p50/p99 ms of single identify searches, one query at a time, k = --k (50, like the service),
  FAISS on --search-threads (1, as bench/roster_scale.py: the service's setting on 2 cores);
- person recall: over --probes new photos of enrolled people (none of them enrolled), the share
  whose nearest face in the index is of the same person as flat's nearest face (flat is 1 by
  definition); "k overlap": the share of flat's k nearest faces the index also returned;
- same identification at each --thresholds T (the service's is 0.7 unless a site calibrates its
  own): of the probes flat identifies (nearest face nearer than T), the share the index identifies
  as the same person, with the misses and that count. A probe flat finds no one for, the index
  finds no one for either (its distances are exact, over a subset of the faces), so these are
  all the identify answers that can differ. Person recall counts beside them the probes whose
  nearest face is a stranger's at any distance, which identify answers "not in the database".

With --huge-pages, each index is timed again after moving its vectors and links onto 2 MB pages,
as the service does after loading or building it (index.huge_pages, index/pages.py: Linux 6.1+,
transparent huge pages not "never"): a search reads them at random, and every 4 KB page it touches
may miss the TLB. Its rows say "2 MB pages" with the seconds the move took, and repeat the recall
measured on the same index. The rows above them are on 4 KB pages, where Linux's setting is
"madvise" (as on this bench's machines); with "always" they may already be on huge pages.

Each size also prints its roster's own distances: a probe's nearest own face, its nearest face of
another person, and how often flat's nearest face is the probe's person (below 1: at this size a
stranger can be nearer than one's own photos, whatever the index).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the synthetic faces the tests use too

from clustered_faces import DIM, ClusteredFaces, FaceModel  # noqa: E402
from index import INDEX_FILE, FaceIndex, IndexSpec  # noqa: E402

MODEL_ID = "bench-clustered-faces"
QUANTILES = (1, 5, 50, 95, 99)


def rss_bytes() -> int:
    """Resident anonymous memory (not the mapped faces file), after handing freed heap back to the
    system (else an index built into memory that earlier arrays freed would not show)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:  # not glibc: measure as it is
        pass
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    return 0


def load() -> str:
    return "/".join(f"{v:.1f}" for v in os.getloadavg())


def quantiles(values) -> str:
    return " ".join(f"{v:.3f}" for v in np.percentile(values, QUANTILES))


# --- distances: synthetic beside real ------------------------------------------------------------


def distance_profile(vectors: np.ndarray, people: np.ndarray) -> dict[str, np.ndarray]:
    """Same-person and different-person pair distances, and each photo's nearest other person."""
    distances = np.sqrt(np.maximum(0.0, 2.0 - 2.0 * vectors @ vectors.T))
    same = people[:, None] == people[None, :]
    upper = np.triu_indices(len(vectors), 1)
    np.fill_diagonal(distances, np.inf)
    return {"same-person pairs": distances[upper][same[upper]],
            "different-person pairs": distances[upper][~same[upper]],
            "nearest other person": np.where(same, np.inf, distances).min(axis=1)}


def synthetic_profiles(model: FaceModel) -> list[tuple[str, dict]]:
    """Pairs among 300 people of 20 photos; nearest other among 2,015 people of 1-2 photos (LFW's
    pairs.txt photos: 3,610 of 2,015 people), from the bench's generator settings."""
    rows = []
    for people, per, label in ((300, 20, "synthetic, 300 people x 20"), (2015, 2, "synthetic, 2,015 people x 2")):
        faces = ClusteredFaces(FaceModel(**{**model.__dict__, "faces_per_person": per, "seed": model.seed + 1}))
        rows.append((label, distance_profile(faces.faces(people * per), np.arange(people * per) // per)))
    return rows


def real_profile(inputs: list[Path]) -> tuple[str, dict]:
    """The same distances on real encodings, read from `facerec evaluate`'s cache."""
    from service.config import load_config
    from service.evaluation.datasets import load_inputs
    from service.evaluation.report import encode_dataset
    from service.pipeline.model_id import configured_model_id

    config = load_config()

    def no_model():
        raise SystemExit(f"{', '.join(map(str, inputs))}: not all encoded yet; run `facerec evaluate` on it first "
                         f"(with the same FACEREC_HOME), then this bench")

    evaluation = encode_dataset(load_inputs(inputs), config, no_model, configured_model_id(config), progress=False)
    people = np.unique(np.array(evaluation.people), return_inverse=True)[1]
    label = f"real: {' '.join(p.name for p in inputs)} ({len(people)} photos, {people.max() + 1} people)"
    return label, distance_profile(evaluation.vectors, people)


def print_profiles(rows: list[tuple[str, dict]]) -> None:
    print(f"\ndistances (L2 between unit encodings), quantiles {', '.join(f'p{q}' for q in QUANTILES)}")
    print("| source | same-person pairs | different-person pairs | nearest other person |")
    print("|---|---|---|---|")
    for label, profile in rows:
        print(f"| {label} | {quantiles(profile['same-person pairs'])} | {quantiles(profile['different-person pairs'])} "
              f"| {quantiles(profile['nearest other person'])} |", flush=True)


# --- one roster size -------------------------------------------------------------------------------


def single_query_ms(index: FaceIndex, probes: np.ndarray, k: int, threads: int) -> tuple[float, float]:
    """p50 and p99 of one-query-at-a-time searches (after 5 to warm up)."""
    build_threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(threads)
    try:
        times = []
        for number, probe in enumerate(np.concatenate([probes[:5], probes])):
            start = time.perf_counter()
            index.search(probe, k)
            if number >= 5:
                times.append(time.perf_counter() - start)
    finally:
        faiss.omp_set_num_threads(build_threads)
    p50, p99 = np.percentile(times, [50, 99]) * 1000
    return float(p50), float(p99)


def on_huge_pages(index: FaceIndex) -> str | None:
    """Move the index onto 2 MB pages as the service does (index.huge_pages); how long it took, or
    None where Linux refused."""
    start = time.perf_counter()
    moved = index.use_huge_pages()
    return f"2 MB pages ({time.perf_counter() - start:.1f} s to move)" if moved else None


def built(spec: IndexSpec, vectors: np.ndarray, workdir: Path) -> tuple[FaceIndex, dict]:
    """The index, and its build s, RSS bytes per face, saved bytes per face and load s."""
    n = len(vectors)
    before = rss_bytes()
    shown = [0]

    def progress(step: int) -> None:
        shown[0] += step
        if n >= 1_000_000 and shown[0] % (n // 10) < step:
            print(f"  ... {spec.kind}: {shown[0]:,} of {n:,} faces added (load {load()})", file=sys.stderr, flush=True)

    start = time.perf_counter()
    index = FaceIndex.build(np.arange(n), vectors, progress=progress, spec=spec)
    build_s = time.perf_counter() - start
    rss = (rss_bytes() - before) / n
    directory = workdir / spec.kind
    index.save(directory, generation=1, model_id=MODEL_ID)
    file_bytes = (directory / INDEX_FILE).stat().st_size / n
    del index
    gc.collect()
    start = time.perf_counter()
    index = FaceIndex.load(directory, model_id=MODEL_ID, spec=spec)
    load_s = time.perf_counter() - start
    for path in directory.iterdir():
        path.unlink()
    return index, {"build": build_s, "rss": rss, "file": file_bytes, "load": load_s}


def measure(n: int, args, faces: ClusteredFaces, hnsw: IndexSpec) -> None:
    per = faces.model.faces_per_person
    rng = np.random.default_rng(n)
    persons = rng.choice(n // per, min(args.probes, n // per), replace=False)
    probes = faces.probes(persons)
    timed = probes[:args.queries]

    with tempfile.TemporaryDirectory(prefix="facerec-ann-bench-", dir=args.dir) as workdir:
        # The faces go to a file mapped into memory: pages the kernel may drop and read again, so
        # that at 10M faces (5.1 GB) they do not sit in memory beside the index being built.
        vectors = faces.faces(n, np.lib.format.open_memmap(Path(workdir) / "faces.npy", "w+", np.float32, (n, DIM)))
        vectors.flush()
        flat, stats = built(IndexSpec(), vectors, Path(workdir))
        truth_d, truth = flat.search(probes, args.k)
        own = np.linalg.norm(vectors[persons[:, None] * per + np.arange(per)] - probes[:, None, :], axis=-1).min(axis=1)
        other = faces.person_of(truth) != persons[:, None]
        impostor = truth_d[np.arange(len(probes)), other.argmax(axis=1)]
        right = np.mean(faces.person_of(truth[:, 0]) == persons)
        print(f"\n{n:,} faces of {n // per:,} people; {len(probes):,} probes (new photos of enrolled people): "
              f"nearest own face {quantiles(own)}; nearest other person {quantiles(impostor)}; "
              f"flat's nearest face is the probe's person for {right:.4f} (quantiles p{', p'.join(map(str, QUANTILES))})")
        columns = header(args.thresholds)
        print(columns)
        print("|" + "|".join("---" for _ in columns.split("|")[1:-1]) + "|")
        exact = identified(truth_d, truth, truth_d, truth, faces, args.thresholds)
        p50, p99 = single_query_ms(flat, timed, args.k, args.search_threads)
        print_row(n, "flat", stats, "-", p50, p99, 1.0, 0, 1.0, exact)
        if args.huge_pages and (pages := on_huge_pages(flat)):
            p50, p99 = single_query_ms(flat, timed, args.k, args.search_threads)
            print_row(n, f"flat, {pages}", stats, "-", p50, p99, 1.0, 0, 1.0, exact)
        del flat
        gc.collect()

        index, stats = built(hnsw, vectors, Path(workdir))
        kind, measured = f"hnsw m={hnsw.m} efC={hnsw.ef_construction}", []
        for ef in args.ef_search:
            index.set_ef_search(ef)
            found_d, found = index.search(probes, args.k)
            same = faces.person_of(found[:, 0]) == faces.person_of(truth[:, 0])
            overlap = np.mean([np.intersect1d(a, b).size / args.k for a, b in zip(found, truth)])
            alike = identified(found_d, found, truth_d, truth, faces, args.thresholds)
            p50, p99 = single_query_ms(index, timed, args.k, args.search_threads)
            print_row(n, kind, stats, ef, p50, p99, same.mean(), int((~same).sum()), overlap, alike)
            measured.append((ef, same.mean(), int((~same).sum()), overlap, alike))
        if args.huge_pages and (pages := on_huge_pages(index)):
            for ef, recall, misses, overlap, alike in measured:
                index.set_ef_search(ef)
                p50, p99 = single_query_ms(index, timed, args.k, args.search_threads)
                print_row(n, f"{kind}, {pages}", stats, ef, p50, p99, recall, misses, overlap, alike)
        del index, vectors
        gc.collect()


def identified(found_d, found, truth_d, truth, faces: ClusteredFaces, thresholds: list[float]) -> list[str]:
    """For each threshold: of the probes flat identifies, the share the index names the same person
    for, as "recall (misses of identified)"."""
    cells = []
    for threshold in thresholds:
        by_flat = truth_d[:, 0] < threshold
        same = (found_d[:, 0] < threshold) & (faces.person_of(found[:, 0]) == faces.person_of(truth[:, 0]))
        misses = int((by_flat & ~same).sum())
        cells.append(f"{1 - misses / max(int(by_flat.sum()), 1):.4f} ({misses} of {int(by_flat.sum()):,})")
    return cells


def header(thresholds: list[float]) -> str:
    return ("| faces | kind | build s | faces/s | file B/face | RSS B/face | load s | ef_search | p50 ms | p99 ms "
            "| person recall | misses | k overlap | "
            + "".join(f"same identification < {t:g} | " for t in thresholds) + "load avg |")


def print_row(n, kind, stats, ef, p50, p99, recall, misses, overlap, alike) -> None:
    print(f"| {n:,} | {kind} | {stats['build']:.1f} | {n / stats['build']:,.0f} | {stats['file']:.0f} "
          f"| {stats['rss']:.0f} | {stats['load']:.2f} | {ef} | {p50:.2f} | {p99:.2f} | {recall:.4f} | {misses} "
          f"| {overlap:.4f} | {''.join(cell + ' | ' for cell in alike)}{load()} |", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated roster sizes (faces)")
    parser.add_argument("--ef-search", default="256,384,768", help="hnsw ef_search values to measure, comma-separated")
    parser.add_argument("--m", type=int, default=IndexSpec.m)
    parser.add_argument("--ef-construction", type=int, default=IndexSpec.ef_construction)
    parser.add_argument("--probes", type=int, default=2000, help="new photos of enrolled people, for recall")
    parser.add_argument("--queries", type=int, default=200, help="of them, timed one at a time")
    parser.add_argument("--k", type=int, default=50, help="faces per search (the service's index.k)")
    parser.add_argument("--threads", type=int, default=2, help="FAISS OpenMP threads for builds and batch searches")
    parser.add_argument("--search-threads", type=int, default=1, help="FAISS OpenMP threads for the timed searches")
    parser.add_argument("--real", action="append", nargs="+", type=Path, default=[],
                        help="an encoded photo set (folders of people, or a pairs file) to compare distances with")
    parser.add_argument("--thresholds", default="0.7,0.9",
                        help="identify thresholds to compare decisions at, comma-separated (the service's: 0.7)")
    parser.add_argument("--huge-pages", action="store_true", help="time each index again on 2 MB pages")
    parser.add_argument("--dir", type=Path, default=None, help="where to save indexes (default: a temporary folder)")
    args = parser.parse_args(argv)
    args.ef_search = [int(v) for v in args.ef_search.split(",") if v.strip()]
    args.thresholds = [float(v) for v in args.thresholds.split(",") if v.strip()]
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    faiss.omp_set_num_threads(args.threads)
    model = FaceModel()
    hnsw = IndexSpec(kind="hnsw", m=args.m, ef_construction=args.ef_construction)

    print(f"facerec approximate index bench: faiss {faiss.__version__}, {os.cpu_count()} cores, builds on "
          f"{args.threads} OpenMP thread(s), timed searches on {args.search_threads}; k={args.k}; load average "
          f"{load()} at start")
    print(f"synthetic faces (tests/clustered_faces.py): {model}")
    print_profiles([real_profile(inputs) for inputs in args.real] + synthetic_profiles(model))
    faces = ClusteredFaces(model)
    for n in sizes:
        measure(n, args, faces, hnsw)
        gc.collect()


if __name__ == "__main__":
    main()
