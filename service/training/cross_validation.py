"""Honest numbers for a head: train on some folds of people, measure on the fold it never saw.

For each fold, a head is trained on the other folds' people and measured on the fold's people,
before (the network alone) and after (through the head): every pair of the fold's photos, and the
fold's LFW pairs when a pairs file is given. The folds' held-out distances are pooled into one
before/after report, as LFW's protocol pools its folds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from service.evaluation.identification import identification_report
from service.evaluation.metrics import (PairDistances, all_pair_distances, best_threshold, count_below,
                                        pair_distances, rates, verification_report)
from service.training.head_training import HeadSettings, batch_loss, train_head

STRANGERS = 0.2  # share of a held-out fold's people kept out of its gallery, as `facerec evaluate` does
IDENTIFY_K = 50  # nearest faces fetched per identify, as index.k by default


@dataclass
class Encodings:
    """Usable photos' network encodings with their people and folds; ``pairs`` by fold, as row indices."""

    vectors: np.ndarray
    people: list[str]
    folds: np.ndarray
    pairs: dict[int, list[tuple[int, int, bool]]] | None = None
    pairs_dropped: int = 0


def cross_validate(data: Encodings, settings: HeadSettings, progress: bool = True) -> dict:
    """Per-fold and pooled before/after reports (plain JSON types), and the pooled distances for figures."""
    rows, pooled = [], {"all": ([], []), "lfw": ([], [])}
    people = np.asarray(data.people, dtype=object)
    for fold in sorted(set(data.folds.tolist())):
        train, held = np.flatnonzero(data.folds != fold), np.flatnonzero(data.folds == fold)
        trained = train_head(data.vectors[train], people[train].tolist(), settings, progress)
        after = trained.head.apply(data.vectors)
        row = {"fold": fold + 1, "train_people": len(set(people[train])), "held_out_people": len(set(people[held])),
               "held_out_photos": len(held), "best_step": trained.best_step, "steps": trained.steps,
               "loss_before": batch_loss(None, data.vectors[held], people[held].tolist(), settings),
               "loss_after": batch_loss(trained.head, data.vectors[held], people[held].tolist(), settings)}
        for name, before_after in (("all", _all_pairs(data, held, after)), ("lfw", _lfw_pairs(data, fold, after))):
            if before_after is None or not (len(before_after[0].genuine) and len(before_after[0].impostor)):
                continue  # a fold of one person, or of one photo each, has no pairs of one kind
            pooled[name][0].append(before_after[0])
            pooled[name][1].append(before_after[1])
            row[name] = {stage: {**rates(pairs, settings.threshold), "false_accepts": _false_accepts(pairs, settings.threshold),
                                 "impostor_pairs": len(pairs.impostor)}
                         for stage, pairs in zip(("before", "after"), before_after)}
        for stage, vectors in (("before", data.vectors), ("after", after)):
            found = identification_report(vectors[held], people[held].tolist(), settings.threshold, IDENTIFY_K,
                                          strangers=STRANGERS, seed=settings.seed)
            if found is not None and found["open_set"] is not None:
                row.setdefault("identify", {})[stage] = found
        rows.append(row)
    report = {"folds": rows, "threshold": settings.threshold, "identify": _pooled_identify(rows)}
    distances = {}
    for name, (before, after) in pooled.items():
        if before:
            distances[name] = (_pool(before), _pool(after))
            report[name] = {"before": verification_report(distances[name][0], settings.threshold),
                            "after": verification_report(distances[name][1], settings.threshold)}
            if len(before) > 1:
                for stage, parts in (("before", before), ("after", after)):
                    if (accuracy := protocol_accuracy(parts)) is not None:
                        report[name][stage]["protocol_accuracy"] = accuracy
    losses = [(r["loss_before"], r["loss_after"]) for r in rows if r["loss_before"] is not None]
    report["loss"] = {"before": float(np.mean([b for b, _ in losses])) if losses else None,
                      "after": float(np.mean([a for _, a in losses])) if losses else None}
    return {"report": report, "distances": distances}


def _pooled_identify(rows: list[dict]) -> dict | None:
    """Open-set identification summed over the held-out folds: each fold's people are the gallery,
    a seeded share of them held out as strangers, every photo a probe (``identification_report``)."""
    rows = [r["identify"] for r in rows if "identify" in r]
    if not rows:
        return None
    pooled = {}
    for stage in ("before", "after"):
        sets = [r[stage]["open_set"] for r in rows]
        total = {key: sum(o[key] for o in sets) for key in
                 ("stranger_probes", "strangers_let_in", "enrolled_probes", "enrolled_refused", "enrolled_wrong_person")}
        probes = sum(r[stage]["probes"] for r in rows)
        pooled[stage] = {**total, "probes": probes,
                         "rank1": sum(r[stage]["rank1"] * r[stage]["probes"] for r in rows) / max(probes, 1),
                         "people_per_fold": [r[stage]["gallery_people"] for r in rows],
                         "stranger_let_in_rate": total["strangers_let_in"] / max(total["stranger_probes"], 1),
                         "enrolled_refused_rate": total["enrolled_refused"] / max(total["enrolled_probes"], 1)}
    return {"strangers_share": STRANGERS, "k": IDENTIFY_K, **pooled}


def protocol_accuracy(folds: Sequence[PairDistances]) -> dict | None:
    """LFW's protocol: each fold decided at the threshold best on the other folds; the mean and the
    standard error of the folds' accuracies (None when a fold or its complement lacks a class)."""
    accuracies = []
    for n, fold in enumerate(folds):
        others = _pool([f for m, f in enumerate(folds) if m != n])
        if min(len(others.genuine), len(others.impostor), len(fold.genuine), len(fold.impostor)) == 0:
            return None
        threshold, _ = best_threshold(others)
        accuracies.append(rates(fold, threshold)["accuracy"])
    return {"mean": float(np.mean(accuracies)), "standard_error": float(np.std(accuracies, ddof=1) / np.sqrt(len(accuracies))),
            "folds": accuracies}


def _all_pairs(data: Encodings, held: np.ndarray, after: np.ndarray) -> tuple[PairDistances, PairDistances]:
    people = [data.people[n] for n in held]
    return all_pair_distances(data.vectors[held], people), all_pair_distances(after[held], people)


def _lfw_pairs(data: Encodings, fold: int, after: np.ndarray) -> tuple[PairDistances, PairDistances] | None:
    if not data.pairs or not data.pairs.get(fold):
        return None
    first, second, same = (np.array(column) for column in zip(*data.pairs[fold]))
    same = same.astype(bool)
    return tuple(PairDistances.labelled(pair_distances(vectors, first, second), same)
                 for vectors in (data.vectors, after))


def _pool(parts: Sequence[PairDistances]) -> PairDistances:
    return PairDistances.of(np.concatenate([p.genuine for p in parts]), np.concatenate([p.impostor for p in parts]))


def _false_accepts(pairs: PairDistances, threshold: float) -> int:
    return int(np.asarray(count_below(pairs.impostor, threshold)))
