"""The numbers of an identification evaluation: leave-one-photo-out ranks (closed set), and the
open-set split, where held-out people must come back "not in the database".

Conventions (those of ``service.app.rules``): people are ranked by their nearest face, and a probe is
accepted iff its nearest person's ``distance < threshold`` (strict).
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

import numpy as np

from service.app.results import Candidate
from service.app.rules import accepts, rank_people


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
    enrolled = np.array([held is None or p not in held for p in people])
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
