"""Peak memory and time of `facerec evaluate <folders>` after encoding, on LFW-sized synthetic sets; prints a table.

    .venv/bin/python bench/evaluate_memory.py [--photos 2000,6000,13000] [--before REV] [--no-before]

Encodings stand in for photos (tests/clustered_faces.py's people as clusters): ``--photos`` faces of
photos * 0.215 people (LFW: 13,233 photos of 5,749 people, 13,000 of about 2,800 here), person k
having 1 + a share of the rest falling as (k + 1)^-0.8, so the largest has about 4% of the photos, as
George W Bush has in LFW. Each row runs in a fresh process, whose own peak RSS (ru_maxrss) it
reports, so rows do not inherit each other's memory:

- "after": this checkout's ``evaluation_of`` (the usable photos' vectors and the verification pairs
  of every unordered photo pair), then ``report_of`` (verification, identification and both figures):
  what ``facerec evaluate`` does once every photo is encoded;
- "before": the same steps with ``service/evaluation/metrics.py`` and ``figures.py`` as they were at
  ``--before`` (default: the last commit before the blocked pairs), loaded from git into this process.

tests/test_evaluation.py runs the "after" child at 13,000 photos and asserts its peak under 2 GB.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the synthetic faces the tests use too

from clustered_faces import ClusteredFaces, FaceModel  # noqa: E402

BEFORE = "5f96b82e5eb5fa5f500fc141d299ad75a2911a7c"  # the last commit with every photo pair as index arrays
PEOPLE_SHARE = 0.215
DECAY = 0.8
SEED = 7


def lfw_like_people(photos: int, seed: int = SEED) -> np.ndarray:
    """Person index of each photo, grouped by person as a folder listing is: few people with many."""
    people = max(2, round(photos * PEOPLE_SHARE))
    weights = (np.arange(people) + 1.0) ** -DECAY
    extra = np.floor(weights / weights.sum() * (photos - people)).astype(np.int64)
    extra[: photos - people - extra.sum()] += 1  # the rounding remainder to the largest
    return np.repeat(np.arange(people), 1 + extra)


def lfw_like_encodings(photos: int, seed: int = SEED) -> tuple[np.ndarray, list[str]]:
    """(photos, 128) float32 unit encodings and their people's names."""
    persons = lfw_like_people(photos, seed)
    vectors = ClusteredFaces(FaceModel(seed=seed)).probes(persons)
    return vectors, [f"person_{p:05d}" for p in persons]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---- one row, in its own process ------------------------------------------------------------------

def run_after(vectors: np.ndarray, people: list[str], folder: Path) -> dict:
    """This checkout's evaluate path after encoding."""
    from service.config import load_config
    from service.evaluation.datasets import Dataset
    from service.evaluation.encodings import Encoded
    from service.evaluation.report import evaluation_of, report_of

    config = load_config(home=str(folder))
    dataset = Dataset([Path(f"synthetic/{n}.jpg") for n in range(len(people))], list(people), None, ["synthetic"])
    start = time.perf_counter()
    ev = evaluation_of(dataset, [Encoded(v) for v in vectors])
    pairs_s = time.perf_counter() - start
    start = time.perf_counter()
    report = report_of(ev, config, "bench-model", figures=folder / "figures")
    ver = report["verification"]
    return {"pairs": ver["pairs"], "genuine": ver["genuine"], "pairs_s": pairs_s,
            "report_s": time.perf_counter() - start, "auc": ver["auc"], "eer": ver["eer"],
            "rank1": report["identification"]["rank1"]}


def _from_git(rev: str, path: str, name: str, replace: dict[str, str]) -> object:
    """Module ``name`` made from ``path`` as it was at ``rev``."""
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:{path}"], check=True, capture_output=True,
                            text=True).stdout
    for old, new in replace.items():
        source = source.replace(old, new)
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(name, loader=None))
    sys.modules[name] = module
    exec(compile(source, f"{rev[:8]}:{path}", "exec"), module.__dict__)
    return module


def run_before(vectors: np.ndarray, people: list[str], folder: Path, rev: str) -> dict:
    """The same steps with metrics.py and figures.py as at ``rev`` (its report.py's order of calls)."""
    from service.config import load_config

    config = load_config(home=str(folder))
    m = _from_git(rev, "service/evaluation/metrics.py", "before_metrics", {})
    f = _from_git(rev, "service/evaluation/figures.py", "before_figures",
                  {"service.evaluation.metrics": "before_metrics"})
    start = time.perf_counter()
    first, second, same = m.all_pairs(people)
    distances = m.pair_distances(vectors, first, second)
    pairs_s = time.perf_counter() - start
    start = time.perf_counter()
    ver = m.verification_report(distances, same, config.threshold)
    ident = m.identification_report(vectors, people, config.threshold, config.index_k, 0.2, 0)
    f.write_figures(distances, same, config.threshold, folder / "figures")
    return {"pairs": ver["pairs"], "genuine": ver["genuine"], "pairs_s": pairs_s,
            "report_s": time.perf_counter() - start, "auc": ver["auc"], "eer": ver["eer"], "rank1": ident["rank1"]}


def child(version: str, photos: int, rev: str) -> None:
    """Print one row's numbers as JSON (the last line of output)."""
    vectors, people = lfw_like_encodings(photos)
    with tempfile.TemporaryDirectory(prefix="evaluate-memory-") as tmp:
        start = time.perf_counter()
        row = (run_after(vectors, people, Path(tmp)) if version == "after"
               else run_before(vectors, people, Path(tmp), rev))
        row["total_s"] = time.perf_counter() - start
    row.update(version=version, photos=photos, people=len(set(people)), peak_rss_mb=peak_rss_mb())
    print(json.dumps(row), flush=True)


def measure(version: str, photos: int, rev: str) -> dict:
    """One row in a fresh process; a child that dies (out of memory, say) is a row saying so."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, __file__, "--child", version, "--photos", str(photos), "--before", rev],
                          capture_output=True, text=True, env=env)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"version": version, "photos": photos, "failed": f"exit {done.returncode}: {tail}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def print_row(row: dict) -> None:
    if "failed" in row:
        print(f"| {row['photos']:,} | | | {row['version']} | failed: {row['failed']} | | | | | | |", flush=True)
        return
    print(f"| {row['photos']:,} | {row['people']:,} | {row['pairs']:,} ({row['genuine']:,} genuine) | {row['version']} "
          f"| {row['peak_rss_mb']:,.0f} | {row['pairs_s']:.1f} | {row['report_s']:.1f} | {row['total_s']:.1f} "
          f"| {row['auc']:.6f} | {row['eer']:.6f} | {row['rank1']:.4f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", default="2000,6000,13000", help="comma-separated photo counts")
    parser.add_argument("--before", default=BEFORE, help="git revision of the 'before' metrics and figures")
    parser.add_argument("--no-before", action="store_true", help="measure this checkout only")
    parser.add_argument("--child", choices=["before", "after"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = [int(s) for s in args.photos.split(",")]
    if args.child:
        child(args.child, sizes[0], args.before)
        return
    print("| photos | people | pairs | version | peak RSS MB | pairs s | report s | total s | AUC | EER | rank-1 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|", flush=True)
    for photos in sizes:
        for version in (["after"] if args.no_before else ["before", "after"]):
            print_row(measure(version, photos, args.before))


if __name__ == "__main__":
    main()
