"""Memory of MTCNN detection with several threads detecting large photos at once: the process's RSS.

A server detects in several threads, and the networks' infer requests keep buffers for the largest
photo they saw. This bench detects the 5-celebrity photos plus 25 of them enlarged to 800 pixels
wide (what a phone photo becomes at the service's max_side), three passes from --threads threads,
and prints the resident memory after and at its peak. --code DIR imports another checkout's
detector (a worktree of an earlier commit, say), so that two can be compared by the same script:

    .venv/bin/python bench/detection_memory.py --threads 8
    .venv/bin/python bench/detection_memory.py --threads 8 --code ../base
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CELEBRITIES = ROOT / "models" / "data" / "5-celebrity"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=8, help="threads detecting at once")
    parser.add_argument("--code", type=Path, default=ROOT, help="the checkout whose detector to run")
    args = parser.parse_args()
    if not (args.code / "service" / "pipeline" / "detect.py").is_file():
        parser.error(f"--code {args.code}: no service/pipeline/detect.py there")
    sys.path.insert(0, str(args.code.resolve()))
    from service.pipeline.decode import load_for_detection
    from service.pipeline.detect import FaceDetector

    photos = [load_for_detection(p, 800).small for p in sorted(CELEBRITIES.glob("*/*/*.jpg"))]
    large = [p.resize((800, round(800 * p.height / p.width))) for p in photos[:25]]
    detector = FaceDetector()
    for _ in range(3):
        with ThreadPoolExecutor(args.threads) as pool:
            list(pool.map(detector.detect, large + photos))
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    print(f"detector of {args.code.resolve().name}, {args.threads} threads, {len(photos)} photos + {len(large)} "
          f"at 800 px, 3 passes: RSS {int(status['VmRSS'].split()[0]) / 1024:,.0f} MB, "
          f"peak {int(status['VmHWM'].split()[0]) / 1024:,.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
