"""MTCNN under concurrent callers: photos/s and CPU per photo when several threads detect at once.

A server detects several requests' photos at the same time. This bench runs the 5-celebrity photos
through the detector from 1, 2 and 4 threads, with each of:

- every core per call: each network call spread over all cores (OpenVINO's latency hint), as every
  detection ran before ``FaceDetector`` took streams for concurrent photos;
- one stream per call: each call on one of OpenVINO's throughput streams (one core each here);
- as shipped: ``FaceDetector.detect``, which gives a photo every core until as many photos are being
  detected as there are streams, and a stream each from then on.

The rounds alternate between the three so that whatever else the machine does weighs on each alike.
CPU is this process's user + system time, so it counts the cores' waiting on each other as well.

    .venv/bin/python bench/detection_concurrency.py --rounds 3
    .venv/bin/python bench/detection_concurrency.py --photo PHOTO --repeat 100   # one photo, 100 times a pass
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

CELEBRITIES = PROJECT_ROOT / "models" / "data" / "5-celebrity"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; the median is shown")
    parser.add_argument("--callers", type=int, nargs="+", default=[1, 2, 4], help="threads detecting at once")
    parser.add_argument("--photo", type=Path, action="append", help="photos to detect (default: the 5-celebrity set)")
    parser.add_argument("--repeat", type=int, default=1, help="times each photo is detected in a pass")
    args = parser.parse_args()

    from service.pipeline.decode import is_photo, load_for_detection
    from service.pipeline.detect import FaceDetector

    if args.photo and not all(p.is_file() for p in args.photo):
        parser.error("--photo: no such file")

    paths = args.photo or [p for p in sorted(CELEBRITIES.rglob("*")) if is_photo(p)]
    photos = [load_for_detection(p, 800).small for p in paths] * args.repeat
    shipped = FaceDetector()
    alone, together = FaceDetector(), FaceDetector()
    alone._together = alone._alone  # every call on every core, whatever runs beside it
    together._alone = together._together  # every call on one stream, even with no other beside it
    ways = {"every core per call": alone, "one stream per call": together, "as shipped": shipped}
    for detector in ways.values():  # first sight of each photo's shapes, out of the timed rounds
        for photo in photos:
            detector.detect(photo)

    times: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for _ in range(args.rounds):
        for callers in args.callers:
            for name, detector in ways.items():
                times.setdefault((name, callers), []).append(_timed(detector, photos, callers))

    source = f"{len(paths)} photo(s) given" if args.photo else "5-celebrity photos"
    print(f"MTCNN under concurrent callers: {len(photos)} detections of {source} per pass, {os.cpu_count()} cores, "
          f"median of {args.rounds} alternating rounds; load average {os.getloadavg()[0]:.1f} at the end")
    print("| callers | networks | photos/s | CPU ms per photo |")
    print("|--------:|----------|---------:|-----------------:|")
    for callers in args.callers:
        for name in ways:
            runs = times[(name, callers)]
            rate = statistics.median(len(photos) / wall for wall, _ in runs)
            cpu = statistics.median(1000 * cpu / len(photos) for _, cpu in runs)
            print(f"| {callers:>7} | {name} | {rate:>8.1f} | {cpu:>16.2f} |")
    return 0


def _timed(detector, photos, callers: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds) to detect every photo once, ``callers`` threads taking turns."""
    cpu, wall = time.process_time(), time.perf_counter()
    with ThreadPoolExecutor(callers) as pool:
        list(pool.map(detector.detect, photos))
    return time.perf_counter() - wall, time.process_time() - cpu


if __name__ == "__main__":
    sys.exit(main())
