"""Labelled photos for training, split into identity-disjoint folds.

Inputs are folders of people (``<folder>/<person>/*.jpg``), or LFW's lists: ``people.txt`` (its
folds of people, photos ``<name>/<name>_NNNN.jpg`` beside it) and ``pairs.txt`` (the labelled pairs
of those folds, used to report LFW's own protocol). A person is always in exactly one fold, so a
head validated on a fold has never seen its people.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from service.errors import EvaluationInputError
from service.evaluation.datasets import checked_inputs, load_folders, load_pairs_file


MAX_PHOTOS_PER_PERSON = 100_000  # LFW's most photographed person has 530


@dataclass
class LabelledPhotos:
    """``photos[i]`` shows ``people[i]``; ``folds[person]`` is the person's fold (0-based)."""

    photos: list[Path]
    people: list[str]
    folds: dict[str, int]
    sources: list[str]
    # LFW pairs of these people, by fold: (photo index, photo index, same person).
    pairs: dict[int, list[tuple[int, int, bool]]] | None = None

    @property
    def fold_count(self) -> int:
        return max(self.folds.values()) + 1


def load_labelled(inputs: Sequence[Path], folds: int = 5, pairs: Path | None = None) -> LabelledPhotos:
    """Folders of people, or one LFW ``people.txt`` (its own folds); ``pairs`` an LFW ``pairs.txt``.

    Folders have no folds of their own: each person is put in one of ``folds`` by a hash of their
    name, so the split does not depend on which other people are present.
    """
    inputs, given_folders = checked_inputs(inputs, "one LFW people.txt")
    if given_folders:
        if folds < 2:
            raise EvaluationInputError(f"--folds must be at least 2, got {folds}")
        dataset = load_folders(inputs)
        people = [str(p) for p in dataset.people]
        data = LabelledPhotos(dataset.photos, people, {p: _hash_fold(p, folds) for p in set(people)},
                              dataset.sources)
    else:
        data = _lfw_people(inputs[0])
    if pairs is not None:
        data.pairs = _lfw_pairs_by_fold(data, Path(pairs))
    if len(set(data.folds.values())) < 2:
        raise EvaluationInputError("training needs people in at least two folds (one to validate on)")
    return data


def _hash_fold(person: str, folds: int) -> int:
    return int.from_bytes(hashlib.sha256(person.encode()).digest()[:4], "big") % folds


def _lfw_people(path: Path) -> LabelledPhotos:
    """LFW ``people.txt``: the number of folds, then per fold its size and ``name count`` lines."""
    try:
        lines = [line.split() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise EvaluationInputError(f"cannot read {path}: {exc}") from None
    if not lines or len(lines[0]) != 1 or not lines[0][0].isdigit():
        raise EvaluationInputError(f"{path}: not an LFW people.txt (first line: the number of folds)")
    photos, people, folds = [], [], {}
    fold, row = -1, 1
    remaining = 0
    while row < len(lines):
        fields = lines[row]
        if remaining == 0:
            if len(fields) != 1 or not fields[0].isdigit():
                raise EvaluationInputError(f"{path} line {row + 1}: expected a fold size, got {' '.join(fields)!r}")
            fold, remaining = fold + 1, int(fields[0])
        else:
            if len(fields) != 2 or not re.fullmatch(r"\d+", fields[1]):
                raise EvaluationInputError(f"{path} line {row + 1}: expected 'name count', got {' '.join(fields)!r}")
            name, count = fields[0], int(fields[1])
            if name in folds:
                raise EvaluationInputError(f"{path} line {row + 1}: {name} is listed twice")
            if count > MAX_PHOTOS_PER_PERSON:
                raise EvaluationInputError(f"{path} line {row + 1}: {count} photos of {name} (at most "
                                           f"{MAX_PHOTOS_PER_PERSON})")
            folds[name] = fold
            for n in range(1, count + 1):
                photos.append(path.parent / name / f"{name}_{n:04d}.jpg")
                people.append(name)
            remaining -= 1
        row += 1
    if remaining:
        raise EvaluationInputError(f"{path}: fold {fold + 1} ends {remaining} people short of its stated size")
    if not photos:
        raise EvaluationInputError(f"{path} lists no people")
    return LabelledPhotos(photos, people, folds, [str(path)])


def _lfw_pairs_by_fold(data: LabelledPhotos, path: Path) -> dict[int, list[tuple[int, int, bool]]]:
    """The pairs file's pairs, each in its people's fold; a pair whose people are in no or two folds
    (not LFW's own lists) is refused rather than silently mixing training and validation people."""
    dataset = load_pairs_file(path)
    index = {photo.resolve(): n for n, photo in enumerate(data.photos)}
    by_fold: dict[int, list[tuple[int, int, bool]]] = {}
    for a, b, same in dataset.pairs or []:
        ends = [dataset.photos[a], dataset.photos[b]]
        rows = [index.get(photo.resolve()) for photo in ends]
        if None in rows:
            raise EvaluationInputError(f"{path}: pair photo {ends[rows.index(None)]} is not among the training photos")
        fa, fb = data.folds[data.people[rows[0]]], data.folds[data.people[rows[1]]]
        if fa != fb:
            raise EvaluationInputError(f"{path}: a pair spans folds {fa + 1} and {fb + 1}; "
                                       "pairs must come from the people list's own folds")
        by_fold.setdefault(fa, []).append((rows[0], rows[1], same))
    return by_fold
