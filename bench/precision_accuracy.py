"""Is a faster, inexact FaceNet accurate enough to serve? Encodings and decisions side by side with fp32.

Two candidates (``--precision``), both on OpenVINO:

- ``bf16`` (``model.precision: bf16``): on CPUs with bfloat16 units OpenVINO runs FaceNet 1.9-2.5x as
  fast in bf16 as in fp32 (`bench/runtimes.py`), moving encodings by up to about 0.03 L2.
- ``int8`` (``model.precision: int8``): FaceNet quantised after training by NNCF, its activation ranges
  calibrated on the 5-celebrity train photos (each one's most confident face and its mirror: photos the
  service has wherever it has the weights, and none of them in LFW). Runs on any x86 CPU.

Both are loaded as the service loads them (``build_pipeline``), through the model cache.

Every usable LFW photo of `../shared/data/lfw` (its dominant face, detected and aligned once) is encoded
by fp32 and by the candidate, and the two are compared face by face, by speed (the whole set at batch
32, and --single faces one request at a time, as a server's lone request runs), and by their verification
results at the configured threshold, through the configured head: LFW's pairs, every pair of the photos,
and how many decisions at the threshold flip.

    .venv/bin/python bench/precision_accuracy.py [--precision bf16|int8] [--lfw ../shared/data/lfw] [--limit N]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from service.app.rules import dominant_face  # noqa: E402
from service.config import load_config  # noqa: E402
from service.errors import FacerecError  # noqa: E402
from service.evaluation.datasets import load_pairs_file  # noqa: E402
from service.evaluation.metrics import (PairDistances, all_pair_distances, pair_distances,  # noqa: E402
                                        verification_report)
from service.pipeline.head import configured_head  # noqa: E402
from service.pipeline.pipeline import build_pipeline  # noqa: E402
from service.training.data import load_labelled  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", choices=("bf16", "int8"), default="bf16")
    parser.add_argument("--lfw", type=Path, default=ROOT.parent / "shared" / "data" / "lfw")
    parser.add_argument("--limit", type=int, default=0, help="only the first N photos (0: all)")
    parser.add_argument("--single", type=int, default=200, help="faces timed one at a time (default 200)")
    args = parser.parse_args()
    if args.single < 1:
        parser.error("--single needs at least 1 face")
    config = load_config()
    plain = replace(config.model, head=None, runtime="openvino", precision="fp32")
    pipeline = build_pipeline(replace(config, model=plain))
    fp32, other = pipeline.encoder, args.precision
    try:
        candidate = build_pipeline(replace(config, model=replace(plain, precision=other))).encoder
    except FacerecError as exc:
        sys.exit(f"{other}: {exc}")
    head = configured_head(config)  # checked against the network it was trained on
    data = load_labelled([args.lfw / "people.txt"])
    photos = data.photos[:args.limit] if args.limit else data.photos
    crops, rows = [], {}
    started = time.monotonic()
    for path in photos:
        try:
            crops.append(dominant_face(pipeline.locate(path), str(path)).crop)
            rows[path] = len(crops) - 1
        except FacerecError:
            continue
    print(f"{len(crops)} of {len(photos)} photos with a usable face (detected in {time.monotonic() - started:.0f} s)")
    encoded, seconds, single = {}, {}, {}
    for name, encoder in (("fp32", fp32), (other, candidate)):
        started = time.monotonic()
        vectors = encoder.encode(crops)
        seconds[name] = time.monotonic() - started
        encoded[name] = head.apply(vectors) if head is not None else vectors
        encoded[name + " network"] = vectors
    for _ in range(2):  # alternating rounds, the second one kept: both warm, under the same load
        for name, encoder in (("fp32", fp32), (other, candidate)):
            started = time.monotonic()
            for crop in crops[:args.single]:
                encoder.encode([crop])
            single[name] = (time.monotonic() - started) / len(crops[:args.single]) * 1000
    moved = np.linalg.norm(encoded["fp32 network"] - encoded[other + " network"], axis=1)
    print(f"encoding {len(crops)} faces (flip {fp32.flip}, batch {fp32.batch_size}): fp32 {seconds['fp32']:.0f} s, "
          f"{other} {seconds[other]:.0f} s ({seconds['fp32'] / seconds[other]:.2f}x); one face at a time "
          f"({len(crops[:args.single])} faces): fp32 {single['fp32']:.1f} ms, {other} {single[other]:.1f} ms "
          f"({single['fp32'] / single[other]:.2f}x)")
    print(f"{other} - fp32 encodings, L2 per face (network): median {np.median(moved):.4f}, "
          f"p99 {np.quantile(moved, 0.99):.4f}, max {moved.max():.4f}")
    owner = dict(zip(data.photos, data.people))
    people = [owner[p] for p in rows]
    listed = [(rows.get(a), rows.get(b), same) for a, b, same in _pairs(args.lfw, data)]
    listed = [(a, b, s) for a, b, s in listed if a is not None and b is not None]
    first, second, same = (np.array(c) for c in zip(*listed)) if listed else (np.zeros(0, int),) * 3
    threshold = config.threshold
    print(f"\nthreshold {threshold:g}, head {head.head_id if head else 'none'}\n")
    print(f"{'pairs':<34}{'precision':>10}{'accuracy':>10}{'TAR':>9}{'FAR':>10}{'AUC':>9}{'TAR@1e-3':>10}{'flipped':>9}")
    for label, make in ((f"LFW pairs ({len(listed)})", lambda v: PairDistances.labelled(
            pair_distances(v, first, second), same.astype(bool))),
                        ("every pair of the photos", lambda v: all_pair_distances(v, people))):
        for name in ("fp32", other):
            report = verification_report(make(encoded[name]), threshold)
            tar3 = next(x["tar"] for x in report["tar_at_far"] if x["far_target"] == 1e-3)
            flipped = _flipped(encoded["fp32"], encoded[other], first, second, threshold) \
                if name == other and "LFW" in label else ""
            print(f"{label:<34}{name:>10}{report['accuracy']:>10.4f}{report['tar']:>9.4f}{report['far']:>10.6f}"
                  f"{report['auc']:>9.5f}{tar3:>10.4f}{flipped:>9}")


def _pairs(lfw: Path, data):
    dataset = load_pairs_file(lfw / "pairs.txt")
    return [(dataset.photos[a], dataset.photos[b], s) for a, b, s in dataset.pairs]


def _flipped(exact, other, first, second, threshold) -> int:
    """LFW pairs whose accept/refuse decision differs between the two precisions."""
    return int(((pair_distances(exact, first, second) < threshold)
                != (pair_distances(other, first, second) < threshold)).sum())


if __name__ == "__main__":
    main()
