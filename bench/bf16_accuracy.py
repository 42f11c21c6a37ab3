"""Is OpenVINO's bfloat16 FaceNet accurate enough to serve? Encodings and decisions side by side.

On CPUs with bfloat16 units OpenVINO runs FaceNet 1.9-2.5x as fast in bf16 as in fp32
(`bench/runtimes.py`), but moves encodings by up to about 0.02 L2, so the project runs fp32. This
measures what that costs on real photos: every usable LFW photo of `../shared/data/lfw` (its dominant
face, detected and aligned once) is encoded by both, and the two are compared face by face and by their
verification results at the configured threshold, through the configured head: LFW's pairs, every
pair of the photos, and how many decisions at the threshold flip.

    .venv/bin/python bench/bf16_accuracy.py [--lfw ../shared/data/lfw] [--limit N]
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
from service.pipeline.encoder import Encoder  # noqa: E402
from service.pipeline.head import configured_head  # noqa: E402
from service.pipeline.pipeline import build_pipeline  # noqa: E402
from service.pipeline.runtime import FaceNet  # noqa: E402
from service.training.data import load_labelled  # noqa: E402


def bf16_embed(config):
    """FaceNet's cached OpenVINO model compiled with bfloat16 inference (what the CPU would pick)."""
    import openvino as ov

    (xml,) = config.model.cache_dir.glob("facenet-*.openvino-*/facenet.xml")
    compiled = ov.Core().compile_model(str(xml), "CPU", {"PERFORMANCE_HINT": "LATENCY",
                                                         "INFERENCE_PRECISION_HINT": "bf16"})
    request = compiled.create_infer_request()
    return lambda batch: np.array(request.infer({0: np.ascontiguousarray(batch, np.float32)})[0], copy=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lfw", type=Path, default=ROOT.parent / "shared" / "data" / "lfw")
    parser.add_argument("--limit", type=int, default=0, help="only the first N photos (0: all)")
    args = parser.parse_args()
    config = load_config()
    pipeline = build_pipeline(replace(config, model=replace(config.model, head=None, runtime="openvino")))
    fp32 = pipeline.encoder
    bf16 = Encoder(FaceNet(bf16_embed(config), fp32.facenet.model_id, "openvino"), fp32.normalization,
                   fp32.batch_size, fp32.flip)
    head = configured_head(config)  # checked against the network it was trained on
    data = load_labelled([args.lfw / "people.txt"])
    photos = data.photos[:args.limit] if args.limit else data.photos
    crops, rows = [], {}
    started = time.monotonic()
    for n, path in enumerate(photos):
        try:
            crops.append(dominant_face(pipeline.locate(path), str(path)).crop)
            rows[path] = len(crops) - 1
        except FacerecError:
            continue
    print(f"{len(crops)} of {len(photos)} photos with a usable face (detected in {time.monotonic() - started:.0f} s)")
    encoded, seconds = {}, {}
    for name, encoder in (("fp32", fp32), ("bf16", bf16)):
        started = time.monotonic()
        vectors = encoder.encode(crops)
        seconds[name] = time.monotonic() - started
        encoded[name] = head.apply(vectors) if head is not None else vectors
        encoded[name + " network"] = vectors
    moved = np.linalg.norm(encoded["fp32 network"] - encoded["bf16 network"], axis=1)
    print(f"encoding {len(crops)} faces (flip {fp32.flip}, batch {fp32.batch_size}): fp32 {seconds['fp32']:.0f} s, "
          f"bf16 {seconds['bf16']:.0f} s ({seconds['fp32'] / seconds['bf16']:.2f}x)")
    print(f"bf16 - fp32 encodings, L2 per face (network): median {np.median(moved):.4f}, "
          f"p99 {np.quantile(moved, 0.99):.4f}, max {moved.max():.4f}")
    people = [data.people[data.photos.index(p)] for p in rows]
    listed = [(rows.get(a), rows.get(b), same) for a, b, same in _pairs(args.lfw, data)]
    listed = [(a, b, s) for a, b, s in listed if a is not None and b is not None]
    first, second, same = (np.array(c) for c in zip(*listed)) if listed else (np.zeros(0, int),) * 3
    threshold = config.threshold
    print(f"\nthreshold {threshold:g}, head {head.head_id if head else 'none'}\n")
    print(f"{'pairs':<34}{'precision':>10}{'accuracy':>10}{'TAR':>9}{'FAR':>10}{'AUC':>9}{'TAR@1e-3':>10}{'flipped':>9}")
    for label, make in ((f"LFW pairs ({len(listed)})", lambda v: PairDistances.labelled(
            pair_distances(v, first, second), same.astype(bool))),
                        ("every pair of the photos", lambda v: all_pair_distances(v, people))):
        decided = {}
        for name in ("fp32", "bf16"):
            report = verification_report(make(encoded[name]), threshold)
            tar3 = next(x["tar"] for x in report["tar_at_far"] if x["far_target"] == 1e-3)
            print(f"{label:<34}{name:>10}{report['accuracy']:>10.4f}{report['tar']:>9.4f}{report['far']:>10.6f}"
                  f"{report['auc']:>9.5f}{tar3:>10.4f}", end="")
            decided[name] = report
            if name == "bf16":
                print(f"{_flipped(encoded, first, second, threshold) if 'LFW' in label else '':>9}")
            else:
                print()


def _pairs(lfw: Path, data):
    dataset = load_pairs_file(lfw / "pairs.txt")
    return [(dataset.photos[a], dataset.photos[b], s) for a, b, s in dataset.pairs]


def _flipped(encoded, first, second, threshold) -> int:
    """LFW pairs whose accept/refuse decision differs between the two precisions."""
    a = pair_distances(encoded["fp32"], first, second) < threshold
    b = pair_distances(encoded["bf16"], first, second) < threshold
    return int((a != b).sum())


if __name__ == "__main__":
    main()
