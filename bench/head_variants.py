"""Which head to train: variants of the head and its loss, cross-validated side by side on LFW.

Each row trains one head per fold on the other folds' people (`service/training`) and measures it on
the fold's people, pooled over the folds, at the configured threshold: LFW's own pairs of each fold,
and every pair of each fold's photos (far more impostor pairs: FAR to 1e-6). Encodings come from the
evaluation cache (the first run encodes the photos).

    .venv/bin/python bench/head_variants.py [--lfw ../shared/data/lfw]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from service.app import Facerec  # noqa: E402
from service.config import load_config  # noqa: E402
from service.training.cross_validation import cross_validate  # noqa: E402
from service.training.data import load_labelled  # noqa: E402
from service.training.head_training import HeadSettings  # noqa: E402
from service.training.report import encode_labelled  # noqa: E402

VARIANTS = [
    ("shipped: weight decay 0.1, 20% of the margin above", {}),
    ("W free (no weight decay)", {"weight_decay": 0.0}),
    ("weight decay 0.01", {"weight_decay": 0.01}),
    ("weight decay 1 (W near the identity)", {"weight_decay": 1.0}),
    ("margin all above the threshold", {"above_share": 1.0}),
    ("margin all below the threshold", {"above_share": 0.0}),
    ("margin half and half", {"above_share": 0.5}),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lfw", type=Path, default=ROOT.parent / "shared" / "data" / "lfw")
    args = parser.parse_args()
    config = load_config()
    config = replace(config, model=replace(config.model, head=None))
    core = Facerec(config)
    data = load_labelled([args.lfw / "people.txt"], pairs=args.lfw / "pairs.txt")
    encodings, _ = encode_labelled(data, config, lambda: core.pipeline, core.model_id)
    base = HeadSettings(threshold=config.threshold)
    print(f"LFW folds 1-5 ({len(encodings.people)} usable photos), threshold {config.threshold:g}; "
          "pooled over held-out folds\n")
    head = (f"{'variant':<52}{'acc@thr':>8}{'TAR':>8}{'FA/imp':>10}{'AUC':>9}{'TAR@1e-3':>9}"
            f"{'all FAR':>10}{'all TAR@1e-3':>13}")
    print(head)
    print("-" * len(head))
    first = True
    for name, change in VARIANTS:
        report = cross_validate(encodings, replace(base, **change), progress=False)["report"]
        if first:
            print_row("network alone", report["lfw"]["before"], report["all"]["before"])
            first = False
        print_row(name, report["lfw"]["after"], report["all"]["after"])
    lfw, every = bias_alone(encodings, config.threshold)
    print_row("no training: a bias alone, set for FAR 1e-3", lfw, every)


def bias_alone(encodings, threshold: float, target: float = 1e-3) -> tuple[dict, dict]:
    """The simplest recalibration, for comparison: ``W`` the identity and a bias along a fixed random
    direction, its length the largest (the most contraction) whose FAR at the threshold on every pair
    of the training folds' photos is at most ``target``; cross-validated like the heads."""
    import numpy as np

    from service.evaluation.metrics import PairDistances, all_pair_distances, pair_distances, rates, verification_report
    from service.pipeline.head import Head

    direction = np.random.default_rng(0).normal(size=128).astype(np.float32)
    direction /= np.linalg.norm(direction)
    parts = {"lfw": ([], []), "all": ([], [])}
    for fold in sorted(set(encodings.folds.tolist())):
        train, held = np.flatnonzero(encodings.folds != fold), np.flatnonzero(encodings.folds == fold)
        sample = np.random.default_rng(fold).choice(train, size=min(len(train), 2500), replace=False)
        length = 0.0
        for candidate in np.arange(0.05, 3.0, 0.025):
            head = Head(np.eye(128, dtype=np.float32), (candidate * direction).astype(np.float32))
            pairs = all_pair_distances(head.apply(encodings.vectors[sample]), [encodings.people[n] for n in sample])
            if rates(pairs, threshold)["far"] > target:
                break
            length = candidate
        head = Head(np.eye(128, dtype=np.float32), (length * direction).astype(np.float32))
        mapped = head.apply(encodings.vectors)
        every = all_pair_distances(mapped[held], [encodings.people[n] for n in held])
        parts["all"][0].append(every.genuine)
        parts["all"][1].append(every.impostor)
        first, second, same = (np.array(c) for c in zip(*encodings.pairs[fold]))
        listed = PairDistances.labelled(pair_distances(mapped, first, second), same.astype(bool))
        parts["lfw"][0].append(listed.genuine)
        parts["lfw"][1].append(listed.impostor)
    return tuple(verification_report(PairDistances.of(np.concatenate(g), np.concatenate(i)), threshold)
                 for g, i in (parts["lfw"], parts["all"]))


def print_row(name: str, lfw: dict, every: dict) -> None:
    def tar_at(report):
        return next(x["tar"] for x in report["tar_at_far"] if x["far_target"] == 1e-3)

    false_accepts = round(lfw["far"] * lfw["impostor"])
    print(f"{name:<52}{lfw['accuracy']:>8.4f}{lfw['tar']:>8.4f}{str(false_accepts) + '/' + str(lfw['impostor']):>10}"
          f"{lfw['auc']:>9.5f}{tar_at(lfw):>9.4f}{every['far']:>10.5f}{tar_at(every):>13.4f}", flush=True)


if __name__ == "__main__":
    main()
