"""Which pixel normalisation should FaceNet get? Measured on real photos, both ways.

For each normalisation (FaceNet's per-image standardisation, and the exercise's divide-by-255), with
and without averaging each face's encoding with its mirror image's ("flip"), this
encodes the 5-celebrity photos through the default pipeline (MTCNN + 5-point alignment) and the Happy
House crops (HH column: door decisions kept, with detection and alignment), then prints: distances of genuine and impostor pairs, verification accuracy at the
configured threshold and at the best threshold, ROC AUC, rank-1 identification of the val photos
against the train photos, and the triplet loss (margin 0.2) over all (anchor, positive, negative)
triplets, which is what the network was trained to drive to zero.

    .venv/bin/python bench/normalization.py [--margin 0.2]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from service.app.photos import photos_by_person  # noqa: E402
from service.app.rules import dominant_face  # noqa: E402
from service.config import load_config  # noqa: E402
from service.pipeline.encoder import Encoder  # noqa: E402
from service.pipeline.pipeline import build_pipeline  # noqa: E402
from service.training.losses import triplet_loss  # noqa: E402


def pair_stats(vectors: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    dist = np.linalg.norm(vectors[:, None] - vectors[None], axis=-1)
    iu = np.triu_indices(len(labels), 1)
    d, same = dist[iu], (labels[:, None] == labels[None])[iu]
    gen, imp = d[same], d[~same]
    # AUC as the probability that a random genuine pair is closer than a random impostor pair.
    auc = float((gen[:, None] < imp[None]).mean() + 0.5 * (gen[:, None] == imp[None]).mean())
    cuts = np.unique(d)
    accs = [((d < t) == same).mean() for t in cuts]
    best = int(np.argmax(accs))
    return {"genuine_mean": gen.mean(), "impostor_mean": imp.mean(), "acc_at_threshold": ((d < threshold) == same).mean(),
            "best_acc": accs[best], "best_threshold": cuts[best], "auc": auc, "pairs": len(d)}


def all_triplet_loss(vectors: np.ndarray, labels: np.ndarray, alpha: float = 0.2) -> tuple[float, int]:
    a_idx, p_idx, n_idx = [], [], []
    for a in range(len(labels)):
        pos = np.flatnonzero((labels == labels[a]) & (np.arange(len(labels)) != a))
        neg = np.flatnonzero(labels != labels[a])
        for p in pos:
            a_idx += [a] * len(neg); p_idx += [p] * len(neg); n_idx += list(neg)
    loss = float(triplet_loss(vectors[a_idx], vectors[p_idx], vectors[n_idx], alpha))
    return loss / len(a_idx), len(a_idx)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--margin", type=float, default=None)
    args = parser.parse_args()
    overrides = {} if args.margin is None else {"detection__margin": args.margin}
    config = load_config(**overrides)
    pipeline = build_pipeline(config)
    celeb = ROOT / "models" / "data" / "5-celebrity"
    crops, labels, split = [], [], []
    for part in ("train", "val"):
        for person, photos in photos_by_person(celeb / part).items():
            for photo in photos:
                faces = pipeline.locate(photo).faces
                if faces:  # the most confident face: the set has a few group photos
                    crops.append(faces[0].crop); labels.append(person); split.append(part)
    labels, split = np.array(labels), np.array(split)
    hh = ROOT.parent / "shared" / "data" / "happy_house"
    expected = json.loads((hh / "expected.json").read_text()) if hh.is_dir() else None

    rows = []
    for method, flip in (("standardize", False), ("divide255", False), ("standardize", True), ("divide255", True)):
        encoder = Encoder(pipeline.encoder.facenet, method, 32, flip=flip)
        vecs = encoder.encode(crops)
        stats = pair_stats(vecs, labels, config.threshold)
        train, val = split == "train", split == "val"
        dist = np.linalg.norm(vecs[val][:, None] - vecs[train][None], axis=-1)
        rank1 = (labels[train][dist.argmin(1)] == labels[val]).mean()
        tl, n_triplets = all_triplet_loss(vecs, labels)
        hh_ok = ""
        if expected:
            enc = lambda f: encoder.encode([dominant_face(pipeline.locate(hh / f), f).crop])[0]  # noqa: E731
            db = {k: enc(v) for k, v in expected["residents"].items()}
            decisions = [bool(np.linalg.norm(enc(c["image"]) - db[c["claimed"]]) < config.threshold) == c["door_open"]
                         for c in expected["verify"]]
            hh_ok = f"{sum(decisions)}/{len(decisions)}"
        rows.append((method + (" +flip" if flip else ""), stats, rank1, tl, hh_ok))
    print(f"5-celebrity, {len(labels)} photos ({(split == 'train').sum()} train, {(split == 'val').sum()} val), "
          f"{rows[0][1]['pairs']} pairs, {n_triplets} triplets; margin {config.detection.margin}; threshold {config.threshold}")
    print(f"{'normalisation':<17} {'gen mean':>8} {'imp mean':>8} {'acc@thr':>8} {'best acc':>8} {'best thr':>8} "
          f"{'AUC':>7} {'rank-1':>7} {'triplet':>8} {'HH door':>8}")
    for method, s, rank1, tl, hh_ok in rows:
        print(f"{method:<17} {s['genuine_mean']:8.3f} {s['impostor_mean']:8.3f} {s['acc_at_threshold']:8.4f} "
              f"{s['best_acc']:8.4f} {s['best_threshold']:8.3f} {s['auc']:7.4f} {rank1:7.3f} {tl:8.4f} {hh_ok:>8}")


if __name__ == "__main__":
    main()
