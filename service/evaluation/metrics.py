"""The numbers of an evaluation: verification rates, ROC, AUC, EER and thresholds from pair distances,
and identification ranks and the open-set split from a distance matrix.

Conventions (those of ``service.app.rules``): distances are L2 between unit encodings and a pair is
accepted iff ``distance < threshold`` (strict).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Sequence

import numpy as np

from service.app.results import Candidate
from service.app.rules import accepts, rank_people
from service.errors import EvaluationInputError

TARGET_FARS = (1e-2, 1e-3)
MAX_DISTANCE = 2.0  # unit vectors are at most 2 apart; also the config's upper bound on the threshold
THRESHOLD_DECIMALS = 4


def pair_distances(vectors: np.ndarray, first: np.ndarray, second: np.ndarray, chunk: int = 65_536) -> np.ndarray:
    """L2 distance of each pair (rows ``first[n]``, ``second[n]``), in float64 so thresholds compare
    exactly; ``chunk`` pairs at a time, so memory does not grow with the number of pairs times 128."""
    vectors = np.asarray(vectors, np.float64)
    distances = np.empty(len(first), np.float64)
    for start in range(0, len(first), chunk):
        part = slice(start, start + chunk)
        distances[part] = np.linalg.norm(vectors[first[part]] - vectors[second[part]], axis=1)
    return distances


def all_pairs(people: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every unordered pair of photos as index arrays, and whether both show the same person."""
    first, second = np.triu_indices(len(people), 1)
    codes = np.unique(np.asarray(people, dtype=object).astype(str), return_inverse=True)[1]
    return first, second, codes[first] == codes[second]


def rates(distances: np.ndarray, same: np.ndarray, threshold: float) -> dict:
    """Accuracy, true-accept and false-accept rates at one threshold (accept iff distance < threshold)."""
    accepted = accepts(distances, threshold)
    gen, imp = accepted[same], accepted[~same]
    return {"accuracy": float((accepted == same).mean()),
            "tar": float(gen.mean()) if gen.size else float("nan"),
            "far": float(imp.mean()) if imp.size else float("nan")}


def roc_points(distances: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, FAR, TAR) at every distinct cut, increasing; the last threshold is +inf (accept all).

    Threshold ``t`` accepts ``distance < t``; cutting at each distinct distance plus +inf gives every
    point of the empirical ROC, from (0, 0) to (1, 1).
    """
    cuts = np.append(np.unique(distances), np.inf)
    gen, imp = np.sort(distances[same]), np.sort(distances[~same])
    tar = np.searchsorted(gen, cuts, side="left") / max(len(gen), 1)
    far = np.searchsorted(imp, cuts, side="left") / max(len(imp), 1)
    return cuts, far, tar


def auc(far: np.ndarray, tar: np.ndarray) -> float:
    """Area under the empirical ROC (trapezoids: ties count half, as in the Mann-Whitney statistic)."""
    return float(np.trapezoid(tar, far))


def equal_error_rate(cuts: np.ndarray, far: np.ndarray, tar: np.ndarray) -> tuple[float, float]:
    """(EER, threshold) where FAR = FRR, linearly interpolated on the ROC segment where they cross.

    FAR rises and FRR = 1 - TAR falls with the threshold; between the last point with FAR < FRR and the
    next, both are taken as linear (in the threshold too, which the returned threshold is).
    """
    frr = 1.0 - tar
    gap = far - frr  # nondecreasing, from -1 to +1
    k = int(np.argmax(gap >= 0))
    if k == 0 or gap[k] == 0:
        return float(far[k]), float(cuts[k])
    w = -gap[k - 1] / (gap[k] - gap[k - 1])
    eer = far[k - 1] + w * (far[k] - far[k - 1])
    upper = cuts[k] if np.isfinite(cuts[k]) else MAX_DISTANCE
    return float(eer), float(cuts[k - 1] + w * (upper - cuts[k - 1]))


def threshold_for_far(impostor: np.ndarray, target: float) -> float:
    """The largest threshold whose empirical FAR is at most ``target``.

    With n impostor distances sorted, k = floor(target * n) false accepts are allowed; accepting
    ``distance < s[k]`` lets in at most k, and any higher threshold lets in s[k] too. The value is
    rounded *down* to the printed precision so the written threshold keeps the guarantee.
    """
    impostor = np.sort(np.asarray(impostor, np.float64))
    allowed = int(math.floor(target * len(impostor) + 1e-9))
    cut = impostor[allowed] if allowed < len(impostor) else MAX_DISTANCE
    scale = 10 ** THRESHOLD_DECIMALS
    return max(math.floor(min(cut, MAX_DISTANCE) * scale) / scale, 1 / scale)


def best_threshold(cuts: np.ndarray, far: np.ndarray, tar: np.ndarray, n_gen: int, n_imp: int) -> tuple[float, float]:
    """(threshold, accuracy) maximising accuracy; the threshold is the middle of its winning gap.

    Every threshold in (previous distinct distance, winning cut] gives the same accuracy; the middle
    is the choice least sensitive to new photos.
    """
    accuracy = (tar * n_gen + (1 - far) * n_imp) / (n_gen + n_imp)
    k = int(np.argmax(accuracy))
    upper = cuts[k] if np.isfinite(cuts[k]) else MAX_DISTANCE
    lower = cuts[k - 1] if k > 0 else 0.0
    return float((lower + upper) / 2), float(accuracy[k])


def verification_report(distances: np.ndarray, same: np.ndarray, threshold: float) -> dict:
    """Every verification number the report shows, from pair distances and labels."""
    same = np.asarray(same, bool)
    n_gen, n_imp = int(same.sum()), int((~same).sum())
    if n_gen == 0 or n_imp == 0:
        raise EvaluationInputError(f"need both genuine and impostor pairs; got {n_gen} genuine and {n_imp} impostor")
    cuts, far, tar = roc_points(distances, same)
    eer, eer_threshold = equal_error_rate(cuts, far, tar)
    best, best_acc = best_threshold(cuts, far, tar, n_gen, n_imp)
    at_far = []
    for target in TARGET_FARS:
        t = threshold_for_far(distances[~same], target)
        at_far.append({"far_target": target, "threshold": t, **rates(distances, same, t),
                       "reliable": n_imp >= 3 / target})
    return {"pairs": len(distances), "genuine": n_gen, "impostor": n_imp, "threshold": threshold,
            **rates(distances, same, threshold), "auc": auc(far, tar), "eer": eer, "eer_threshold": eer_threshold,
            "tar_at_far": at_far, "best_threshold": best, "best_accuracy": best_acc,
            "genuine_distance": _summary(distances[same]), "impostor_distance": _summary(distances[~same])}


def _summary(values: np.ndarray) -> dict:
    return {"min": float(values.min()), "median": float(np.median(values)), "max": float(values.max()),
            "mean": float(values.mean())}


# ---- identification ------------------------------------------------------------------------------

def people_by_distance(distances: np.ndarray, owners: Sequence[str], k: int) -> list[Candidate]:
    """As the roster ranks people: the k nearest faces, each person scored by their nearest face.

    Faces at an infinite distance are not in the gallery (the probe itself, held-out strangers).
    """
    k = min(k, len(distances))
    nearest = np.argpartition(distances, k - 1)[:k] if k else np.empty(0, int)
    order = nearest[np.argsort(distances[nearest], kind="stable")]
    return rank_people((float(distances[n]), owners[n]) for n in order if np.isfinite(distances[n]))


def _rank(candidates: list[Candidate], person: str) -> int | None:
    return next((n for n, c in enumerate(candidates, start=1) if c.person == person), None)


def identification_report(vectors: np.ndarray, people: Sequence[str], threshold: float, k: int,
                          strangers: float = 0.2, seed: int = 0) -> dict | None:
    """Leave-one-photo-out ranks (closed set), and an open-set split with a seeded ``strangers`` share
    of the people held out, whose photos must come back "not in the database".

    One probe's distances at a time (exact, float64): memory grows with the photos, not their square.
    """
    people = list(people)
    counts = Counter(people)
    probes = [i for i, p in enumerate(people) if counts[p] >= 2]
    if not probes:
        return None
    held = _strangers(sorted(counts), strangers, seed)
    enrolled = np.array([p not in held for p in people])
    vectors = np.asarray(vectors, np.float64)
    ranks, open_set = [], {"let_in": 0, "stranger_probes": 0, "refused": 0, "enrolled_probes": 0, "wrong": 0}
    for i, person in enumerate(people):
        distances = np.linalg.norm(vectors - vectors[i], axis=1)
        distances[i] = np.inf  # leave the probe's own photo out
        if counts[person] >= 2:
            ranks.append(_rank(people_by_distance(distances, people, k), person))
        if held is not None and (person in held or counts[person] >= 2):
            _open_set_probe(open_set, np.where(enrolled, distances, np.inf), people, person, person in held,
                            threshold, k)
    report = {"probes": len(probes), "people": len({people[i] for i in probes}), "gallery_people": len(counts),
              "k": k, "rank1": _share(ranks, 1), "rank5": _share(ranks, 5), "open_set": None}
    if held is not None:
        o = open_set
        report["open_set"] = {
            "strangers": held, "share": strangers, "seed": seed, "stranger_probes": o["stranger_probes"],
            "strangers_let_in": o["let_in"], "stranger_let_in_rate": o["let_in"] / max(o["stranger_probes"], 1),
            "enrolled_probes": o["enrolled_probes"], "enrolled_refused": o["refused"],
            "enrolled_refused_rate": o["refused"] / max(o["enrolled_probes"], 1),
            "enrolled_wrong_person": o["wrong"], "threshold": threshold}
    return report


def _share(ranks: list[int | None], top: int) -> float:
    return sum(r is not None and r <= top for r in ranks) / len(ranks)


def _strangers(names: list[str], share: float, seed: int) -> list[str] | None:
    """The people held out of the gallery (seeded), or None when there is no open-set split."""
    if share <= 0 or len(names) < 2:
        return None
    held = min(max(int(round(share * len(names))), 1), len(names) - 1)
    return sorted(np.random.default_rng(seed).choice(names, size=held, replace=False).tolist())


def _open_set_probe(tally: dict, gallery_distances: np.ndarray, people: list[str], person: str, stranger: bool,
                    threshold: float, k: int) -> None:
    candidates = people_by_distance(gallery_distances, people, k)
    answer = candidates[0].person if candidates and accepts(candidates[0].distance, threshold) else None
    if stranger:
        tally["stranger_probes"] += 1
        tally["let_in"] += answer is not None
        return
    tally["enrolled_probes"] += 1
    if answer is None:
        tally["refused"] += 1
    elif answer != person:
        tally["wrong"] += 1
