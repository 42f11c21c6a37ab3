"""Evaluation inputs: folders of people, or one pairs file (a CSV with a header row, or LFW's
``pairs.txt``), photo paths relative to the file."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from service.app.photos import photos_by_person
from service.errors import EvaluationInputError

LABEL_WORDS = {
    "1": True, "0": False, "yes": True, "no": False, "y": True, "n": False, "true": True, "false": False,
    "t": True, "f": False, "same": True, "different": False, "diff": False, "genuine": True, "impostor": False,
    "match": True, "mismatch": False,
}


@dataclass
class Dataset:
    """Photos to encode; ``people[i]`` is photo i's person when known; ``pairs`` (i, j, same) if given."""

    photos: list[Path]
    people: list[str | None]
    pairs: list[tuple[int, int, bool]] | None = None
    sources: list[str] = field(default_factory=list)

    @property
    def labelled(self) -> bool:
        return all(p is not None for p in self.people)


def load_inputs(inputs: Sequence[Path]) -> Dataset:
    """Folders of people (merged by person name) or exactly one pairs file."""
    inputs, folders = checked_inputs(inputs, "a single pairs file")
    return load_folders(inputs) if folders else load_pairs_file(inputs[0])


def checked_inputs(inputs: Sequence[Path], one_file: str) -> tuple[list[Path], bool]:
    """The inputs as paths, and whether they are folders (else they are ``one_file``, a single file).
    Refuses none at all, a path that does not exist, several files, and a mix of folders and files."""
    inputs = [Path(p) for p in inputs]
    if not inputs:
        raise EvaluationInputError(f"give folders of people or {one_file}")
    missing = [p for p in inputs if not p.exists()]
    if missing:
        raise EvaluationInputError(f"no such file or folder: '{missing[0]}'")
    if all(p.is_dir() for p in inputs):
        return inputs, True
    if len(inputs) == 1:
        return inputs, False
    raise EvaluationInputError(f"give either folders of people or {one_file}, not a mix")


def load_folders(folders: Sequence[Path]) -> Dataset:
    """Every photo of every ``<folder>/<person>/``; the same person name in several folders is one person."""
    photos, people = [], []
    for folder in folders:
        for person, paths in photos_by_person(folder).items():
            photos += paths
            people += [person] * len(paths)
    if not photos:
        raise EvaluationInputError(f"no photos found in {', '.join(str(f) for f in folders)}")
    return Dataset(photos, people, None, [str(f) for f in folders])


def load_pairs_file(path: Path) -> Dataset:
    """LFW ``pairs.txt`` when its first line is one or two integers, else a CSV with a header row."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise EvaluationInputError(f"cannot read pairs file {path}: {exc}") from None
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise EvaluationInputError(f"pairs file {path} is empty")
    if re.fullmatch(r"\s*\d+(\s+\d+)?\s*", lines[0]):
        pairs = _lfw_pairs(lines[1:], path)
    else:
        pairs = _csv_pairs(text, path)
    return _pairs_dataset(pairs, path)


def _lfw_pairs(lines: list[str], path: Path) -> list[tuple[Path, Path, bool, str | None, str | None]]:
    """``name i j`` (same person) or ``name1 i name2 j`` (different); files ``name/name_%04d.jpg``."""
    base, pairs = path.parent, []
    for number, line in enumerate(lines, start=2):
        fields = line.split()
        try:
            if len(fields) == 3:
                name, i, j = fields[0], int(fields[1]), int(fields[2])
                pairs.append((_lfw_photo(base, name, i), _lfw_photo(base, name, j), True, name, name))
                continue
            if len(fields) == 4:
                a, i, b, j = fields[0], int(fields[1]), fields[2], int(fields[3])
                pairs.append((_lfw_photo(base, a, i), _lfw_photo(base, b, j), False, a, b))
                continue
        except ValueError:
            pass
        raise EvaluationInputError(f"{path} line {number}: expected 'name idx idx' or 'name idx name idx', "
                                   f"got {line.strip()!r}")
    return pairs


def _lfw_photo(base: Path, name: str, index: int) -> Path:
    return base / name / f"{name}_{index:04d}.jpg"


def _csv_pairs(text: str, path: Path) -> list[tuple[Path, Path, bool, None, None]]:
    """Rows of two photo paths and a label; the label column is the one whose every value is a label word."""
    try:
        dialect = csv.Sniffer().sniff(text.splitlines()[0], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    rows = [[cell.strip() for cell in row] for row in csv.reader(text.splitlines(), dialect) if any(row)]
    header, body = rows[0], rows[1:]
    if not body:
        raise EvaluationInputError(f"pairs file {path} has a header row but no pairs")
    width = len(header)
    short = [n for n, row in enumerate(body, start=2) if len(row) < max(3, width)]
    if width < 3 or short:
        raise EvaluationInputError(f"pairs file {path}: every row needs two photo paths and a label "
                                   f"({'header' if width < 3 else f'row {short[0]}'} has too few columns)")
    label_columns = [c for c in range(width) if all(row[c].lower() in LABEL_WORDS for row in body)]
    if not label_columns:
        raise EvaluationInputError(f"pairs file {path}: no column holds only labels "
                                   f"(1/0, yes/no, true/false, same/different)")
    label = label_columns[-1]  # a photo path is never a label word, so ambiguity means extra label columns
    photo_a, photo_b = [c for c in range(width) if c != label][:2]
    base = path.parent
    return [(base / row[photo_a], base / row[photo_b], LABEL_WORDS[row[label].lower()], None, None)
            for row in body]


def _pairs_dataset(pairs: list, path: Path) -> Dataset:
    """Unique photos (each encoded once) and pairs as indices into them."""
    if not pairs:
        raise EvaluationInputError(f"pairs file {path} lists no pairs")
    index: dict[Path, int] = {}
    photos: list[Path] = []
    people: list[str | None] = []
    indexed = []
    for a, b, same, person_a, person_b in pairs:
        ends = []
        for photo, person in ((a, person_a), (b, person_b)):
            if photo not in index:
                index[photo] = len(photos)
                photos.append(photo)
                people.append(person)
            ends.append(index[photo])
        indexed.append((ends[0], ends[1], same))
    return Dataset(photos, people, indexed, [str(path)])
