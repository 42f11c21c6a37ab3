"""Measure how well the pipeline verifies and identifies on labelled photos, and pick a threshold.

Inputs are folders of people (one sub-folder per person, several folders merged by sub-folder name) or
one pairs file (a CSV with a header row, or LFW's ``pairs.txt``), photo paths relative to the file.
Every photo is encoded once; encodings (and refusals) are cached by photo sha256 and model key under
``<home>/cache/encodings.sqlite``, so a second run does not touch the model.

Conventions (shared with :mod:`service.recognition`): distances are L2 between unit encodings and a
pair is accepted iff ``distance < threshold`` (strict).
"""

from __future__ import annotations

import csv
import hashlib
import logging
import math
import os
import re
import shutil
import sqlite3
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from service.config import Config, load_config
from service.errors import EvaluationInputError, FacerecError, ImageNotFound
from service.recognition import Candidate, Identification

log = logging.getLogger(__name__)

TARGET_FARS = (1e-2, 1e-3)
MAX_DISTANCE = 2.0  # unit vectors are at most 2 apart; also the config's upper bound on the threshold
THRESHOLD_DECIMALS = 4
LABEL_WORDS = {
    "1": True, "0": False, "yes": True, "no": False, "y": True, "n": False, "true": True, "false": False,
    "t": True, "f": False, "same": True, "different": False, "diff": False, "genuine": True, "impostor": False,
    "match": True, "mismatch": False,
}


# ---- inputs --------------------------------------------------------------------------------------

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
    inputs = [Path(p) for p in inputs]
    if not inputs:
        raise EvaluationInputError("give a folder of people or a pairs file")
    missing = [p for p in inputs if not p.exists()]
    if missing:
        raise EvaluationInputError(f"no such file or folder: '{missing[0]}'")
    if all(p.is_dir() for p in inputs):
        return load_folders(inputs)
    if len(inputs) == 1:
        return load_pairs_file(inputs[0])
    raise EvaluationInputError("give either folders of people or a single pairs file, not a mix")


def load_folders(folders: Sequence[Path]) -> Dataset:
    """Every photo of every ``<folder>/<person>/``; the same person name in several folders is one person."""
    from service.folders import photos_by_person  # pulls in TensorFlow: only when folders are read

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


# ---- encodings and their cache -------------------------------------------------------------------

@dataclass(frozen=True)
class Encoded:
    """One photo's outcome: its encoding, or why it could not be used."""

    encoding: np.ndarray | None
    code: str | None = None
    message: str | None = None


def cache_key(config: Config, model_id: str) -> str:
    """The model id plus the detection settings: they change the crop, so the encoding too."""
    if not config.detect:
        return f"{model_id}|no-detect"
    det = config.detection
    return (f"{model_id}|detect max_side={det.max_side} min_face={det.min_face} "
            f"min_confidence={det.min_confidence} margin={det.margin}")


class EncodingCache:
    """(photo sha256, model key) -> encoding or refusal, in one SQLite file; a broken file is started afresh."""

    def __init__(self, path: Path | None):
        self.path = path
        self.db = self._open(path)

    def _open(self, path: Path | None) -> sqlite3.Connection:
        if path is None:
            return self._schema(sqlite3.connect(":memory:"))
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return self._schema(sqlite3.connect(path))
        except sqlite3.DatabaseError as exc:
            # The cache only saves time: losing it is cheaper than refusing to evaluate.
            log.warning("encoding cache %s is unreadable (%s); starting a new one", path, exc)
            print(f"warning: encoding cache {path} is unreadable ({exc}); starting a new one", file=sys.stderr)
            path.unlink(missing_ok=True)
            return self._schema(sqlite3.connect(path))

    @staticmethod
    def _schema(db: sqlite3.Connection) -> sqlite3.Connection:
        db.execute("CREATE TABLE IF NOT EXISTS encodings (sha256 TEXT NOT NULL, model TEXT NOT NULL, "
                   "vector BLOB, code TEXT, message TEXT, PRIMARY KEY (sha256, model))")
        db.execute("SELECT count(*) FROM encodings").fetchone()  # touches the pages: corruption shows here
        return db

    def get(self, digests: Iterable[str], model: str) -> dict[str, Encoded]:
        found = {}
        for digest in set(digests):
            row = self.db.execute("SELECT vector, code, message FROM encodings WHERE sha256 = ? AND model = ?",
                                  (digest, model)).fetchone()
            if row is None:
                continue
            vector, code, message = row
            if vector is not None and len(vector) == 128 * 4:
                found[digest] = Encoded(np.frombuffer(vector, np.float32).copy())
            elif vector is None and code:
                found[digest] = Encoded(None, code, message)
        return found

    def put(self, items: dict[str, Encoded], model: str) -> None:
        rows = [(digest, model, None if e.encoding is None else np.asarray(e.encoding, np.float32).tobytes(),
                 e.code, e.message) for digest, e in items.items()]
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO encodings VALUES (?, ?, ?, ?, ?)", rows)

    def close(self) -> None:
        self.db.close()


def photo_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


PHOTO_PLACEHOLDER = "{photo}"


def encode_photos(photos: Sequence[Path], get_pipeline: Callable[[], object], cache: EncodingCache, model: str,
                  batch_size: int = 32, progress: bool = True) -> list[Encoded]:
    """Each photo's encoding (exactly one face) or refusal; only photos the cache lacks reach the pipeline.

    ``get_pipeline`` is called only when something must be encoded, so a fully cached run never loads
    the model. Results are cached batch by batch: an interrupted run keeps what it did.
    """
    from tqdm import tqdm

    from service.imageio import describe_source

    digests: list[str | None] = []
    outcomes: dict[str, Encoded] = {}
    missing: dict[int, Encoded] = {}
    for n, photo in enumerate(photos):
        try:
            digests.append(photo_sha256(photo))
        except OSError:
            digests.append(None)
            missing[n] = Encoded(None, ImageNotFound.code, f"cannot read '{photo}'")
    outcomes.update(cache.get((d for d in digests if d), model))
    todo: dict[str, Path] = {}
    for digest, photo in zip(digests, photos):
        if digest and digest not in outcomes and digest not in todo:
            todo[digest] = photo
    if todo:
        from service.pipeline import only_face  # TensorFlow loads here: a fully cached run never pays for it

        pipeline = get_pipeline()
        items = list(todo.items())
        with tqdm(total=len(items), unit="photo", desc="encode", file=sys.stderr,
                  disable=None if progress else True) as bar:
            for start in range(0, len(items), batch_size):
                done: dict[str, Encoded] = {}
                crops: dict[str, object] = {}
                for digest, photo in items[start:start + batch_size]:
                    try:
                        crops[digest] = only_face(pipeline.locate(photo), describe_source(photo))
                    except FacerecError as exc:
                        # Stored without the path: the same bytes may come back under another name.
                        done[digest] = Encoded(None, exc.code,
                                               exc.message.replace(describe_source(photo), PHOTO_PLACEHOLDER))
                for digest, face in zip(crops, pipeline.encode(list(crops.values()))):
                    done[digest] = Encoded(np.asarray(face.encoding, np.float32))
                cache.put(done, model)
                outcomes.update(done)
                bar.update(len(items[start:start + batch_size]))
    results = []
    for n, (digest, photo) in enumerate(zip(digests, photos)):
        if n in missing:
            results.append(missing[n])
            continue
        result = outcomes[digest]
        if result.message and PHOTO_PLACEHOLDER in result.message:
            result = Encoded(None, result.code, result.message.replace(PHOTO_PLACEHOLDER, f"'{photo}'"))
        results.append(result)
    return results


# ---- verification metrics ------------------------------------------------------------------------

def pair_distances(vectors: np.ndarray, pairs: Sequence[tuple[int, int]]) -> np.ndarray:
    """L2 distance of each pair, in float64 so thresholds compare exactly."""
    vectors = np.asarray(vectors, np.float64)
    a = np.array([i for i, _ in pairs], dtype=int)
    b = np.array([j for _, j in pairs], dtype=int)
    return np.linalg.norm(vectors[a] - vectors[b], axis=1)


def all_pairs(people: Sequence[str]) -> list[tuple[int, int, bool]]:
    """Every unordered pair of photos, genuine when both show the same person."""
    return [(i, j, people[i] == people[j]) for i in range(len(people)) for j in range(i + 1, len(people))]


def rates(distances: np.ndarray, same: np.ndarray, threshold: float) -> dict:
    """Accuracy, true-accept and false-accept rates at one threshold (accept iff distance < threshold)."""
    accepted = distances < threshold
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

def nearest_people(distances: np.ndarray, owners: Sequence[str], k: int) -> list[Candidate]:
    """The roster's rule: the k nearest faces, grouped by person, each scored by their nearest face."""
    order = np.argsort(distances, kind="stable")[:k]
    best: dict[str, float] = {}
    for n in order:  # nearest first, so a person's first face is their best
        best.setdefault(owners[n], float(distances[n]))
    return [Candidate(p, d) for p, d in best.items()]


def _rank(candidates: list[Candidate], person: str) -> int | None:
    return next((n for n, c in enumerate(candidates, start=1) if c.person == person), None)


def identification_report(vectors: np.ndarray, people: Sequence[str], threshold: float, k: int,
                          strangers: float = 0.2, seed: int = 0) -> dict | None:
    """Leave-one-photo-out ranks (closed set), then an open-set split with some people held out as strangers."""
    people = list(people)
    counts = {p: people.count(p) for p in set(people)}
    probes = [i for i, p in enumerate(people) if counts[p] >= 2]
    if not probes:
        return None
    vectors = np.asarray(vectors, np.float64)
    dist = np.linalg.norm(vectors[:, None] - vectors[None], axis=-1)
    everyone = np.arange(len(people))
    ranks = [_rank(nearest_people(dist[i, everyone != i], [people[j] for j in everyone if j != i], k), people[i])
             for i in probes]
    report = {"probes": len(probes), "people": len({people[i] for i in probes}), "gallery_people": len(counts),
              "k": k, "rank1": _share(ranks, 1), "rank5": _share(ranks, 5)}
    report["open_set"] = open_set_report(dist, people, threshold, k, strangers, seed)
    return report


def _share(ranks: list[int | None], top: int) -> float:
    return sum(r is not None and r <= top for r in ranks) / len(ranks)


def open_set_report(dist: np.ndarray, people: list[str], threshold: float, k: int, share: float,
                    seed: int) -> dict | None:
    """Hold out ``share`` of the people (seeded); their photos must come back "not in the database"."""
    names = sorted(set(people))
    held = int(round(share * len(names)))
    if share <= 0 or len(names) < 2:
        return None
    held = min(max(held, 1), len(names) - 1)
    strangers = sorted(np.random.default_rng(seed).choice(names, size=held, replace=False).tolist())
    enrolled = np.array([p not in strangers for p in people])
    counts = {p: people.count(p) for p in names}
    let_in, refused, wrong, enrolled_probes, stranger_probes = 0, 0, 0, 0, 0
    for i, person in enumerate(people):
        gallery = enrolled.copy()
        gallery[i] = False  # leave-one-photo-out for enrolled probes; no-op for strangers
        if person in strangers:
            stranger_probes += 1
        elif counts[person] >= 2:
            enrolled_probes += 1
        else:
            continue  # an enrolled person with one photo has nothing left to be matched against
        candidates = nearest_people(dist[i, gallery], [people[j] for j in np.flatnonzero(gallery)], k)
        answer = Identification(tuple(candidates), threshold).person
        if person in strangers:
            let_in += answer is not None
        elif answer is None:
            refused += 1
        elif answer != person:
            wrong += 1
    return {"strangers": strangers, "share": share, "seed": seed, "stranger_probes": stranger_probes,
            "strangers_let_in": let_in, "stranger_let_in_rate": let_in / max(stranger_probes, 1),
            "enrolled_probes": enrolled_probes, "enrolled_refused": refused,
            "enrolled_refused_rate": refused / max(enrolled_probes, 1), "enrolled_wrong_person": wrong,
            "threshold": threshold}


# ---- the whole evaluation ------------------------------------------------------------------------

@dataclass
class Evaluation:
    """Encoded inputs: usable photos' vectors and labels, the pairs to verify, and the refused photos."""

    dataset: Dataset
    vectors: np.ndarray
    people: list[str | None]
    usable: list[int]  # dataset photo index of each row of ``vectors``
    distances: np.ndarray
    same: np.ndarray
    refused: list[dict]
    pairs_dropped: int


def encode_dataset(dataset: Dataset, config: Config, get_pipeline: Callable[[], object], model_id: str,
                   cache_path: Path | None = None, progress: bool = True) -> Evaluation:
    """Encode every photo (cached) and form the verification pairs from the usable ones."""
    cache = EncodingCache(cache_path if cache_path is not None else config.home / "cache" / "encodings.sqlite")
    try:
        results = encode_photos(dataset.photos, get_pipeline, cache, cache_key(config, model_id),
                                config.model.batch_size, progress)
    finally:
        cache.close()
    usable = [n for n, r in enumerate(results) if r.encoding is not None]
    refused = [{"photo": str(dataset.photos[n]), "person": dataset.people[n], "code": r.code, "message": r.message}
               for n, r in enumerate(results) if r.encoding is None]
    row = {n: m for m, n in enumerate(usable)}
    vectors = np.stack([results[n].encoding for n in usable]) if usable else np.zeros((0, 128), np.float32)
    people = [dataset.people[n] for n in usable]
    if dataset.pairs is None:
        pairs = all_pairs(people)
        dropped = 0
    else:
        pairs = [(row[a], row[b], same) for a, b, same in dataset.pairs if a in row and b in row]
        dropped = len(dataset.pairs) - len(pairs)
    if not pairs:
        raise EvaluationInputError(f"no usable pairs: {len(usable)} of {len(dataset.photos)} photos could be used")
    distances = pair_distances(vectors, [(a, b) for a, b, _ in pairs])
    same = np.array([s for _, _, s in pairs], dtype=bool)
    return Evaluation(dataset, vectors, people, usable, distances, same, refused, dropped)


def build_report(ev: Evaluation, config: Config, model_id: str, strangers: float = 0.2, seed: int = 0) -> dict:
    """The evaluation report (plain JSON types) at the configured threshold."""
    threshold = config.threshold
    identification = None
    if all(p is not None for p in ev.people):
        identification = identification_report(ev.vectors, ev.people, threshold, config.index_k, strangers, seed)
    return {
        "inputs": {"sources": ev.dataset.sources, "photos": len(ev.dataset.photos), "usable": len(ev.usable),
                   "people": len({p for p in ev.people if p is not None}) or None,
                   "pairs_file": ev.dataset.pairs is not None, "pairs_dropped": ev.pairs_dropped, "model": model_id},
        "verification": verification_report(ev.distances, ev.same, threshold),
        "identification": identification,
        "refused": ev.refused,
    }


def calibration_report(ev: Evaluation, target: float, current: float) -> dict:
    """The threshold meeting ``target`` FAR on these pairs, what it costs, and how far to trust it."""
    if not 0 < target < 1:
        raise EvaluationInputError(f"--far must be between 0 and 1, got {target}")
    gen, imp = ev.distances[ev.same], ev.distances[~ev.same]
    if len(gen) == 0 or len(imp) == 0:
        raise EvaluationInputError(f"need both genuine and impostor pairs; got {len(gen)} genuine, {len(imp)} impostor")
    threshold = threshold_for_far(imp, target)
    at = rates(ev.distances, ev.same, threshold)
    needed = math.ceil(3 / target)
    return {"far_target": target, "threshold": threshold, "far": at["far"], "tar": at["tar"],
            "accuracy": at["accuracy"], "false_accepts": int((imp < threshold).sum()),
            "impostor_pairs": len(imp), "genuine_pairs": len(gen), "reliable": len(imp) >= needed,
            "impostor_pairs_needed": needed, "far_upper_bound_95": min(1.0, 3 / len(imp)),
            "current_threshold": current, "current": rates(ev.distances, ev.same, current)}


def write_threshold(config_path: Path, threshold: float) -> Path:
    """Set ``threshold:`` in the config file, keeping every other line; returns the backup's path.

    The line is edited as text so comments and layout survive; the file is then re-read to prove it
    still parses and holds the new value.
    """
    text = config_path.read_text()
    pattern = re.compile(r"^(threshold:[ \t]*)([^\s#]+)", re.MULTILINE)
    if len(pattern.findall(text)) != 1:
        raise EvaluationInputError(f"{config_path} has no single top-level 'threshold:' line to update")
    backup = config_path.with_name(config_path.name + ".bak")
    shutil.copy2(config_path, backup)
    config_path.write_text(pattern.sub(lambda m: f"{m.group(1)}{threshold:.{THRESHOLD_DECIMALS}f}", text))
    env = {k: v for k, v in os.environ.items() if k != "FACEREC_THRESHOLD"}
    try:
        reloaded = load_config(config_path, env=env)
    except FacerecError:
        shutil.copy2(backup, config_path)  # never leave a config the service cannot start with
        raise
    if abs(reloaded.threshold - threshold) > 10 ** -THRESHOLD_DECIMALS:
        shutil.copy2(backup, config_path)
        raise EvaluationInputError(f"{config_path}: threshold did not take (read back {reloaded.threshold})")
    return backup


# ---- text output ---------------------------------------------------------------------------------

def format_report(report: dict) -> str:
    """The report as a readable terminal table."""
    inp, ver, ident = report["inputs"], report["verification"], report["identification"]
    people = f" of {inp['people']} people" if inp["people"] else ""
    lines = [f"evaluated {', '.join(inp['sources'])}: {inp['usable']} of {inp['photos']} photos usable{people}",
             f"model {inp['model']}"]
    if inp["pairs_dropped"]:
        lines.append(f"{inp['pairs_dropped']} listed pairs dropped (a photo could not be used)")
    lines += ["", f"verification: {ver['pairs']} pairs ({ver['genuine']} genuine, {ver['impostor']} impostor)",
              _row("threshold", f"{ver['threshold']:g}", "accept when distance < threshold"),
              _row("accuracy", f"{ver['accuracy']:.4f}", ""),
              _row("true-accept rate", f"{ver['tar']:.4f}", f"{round(ver['tar'] * ver['genuine'])}/{ver['genuine']} genuine pairs"),
              _row("false-accept rate", f"{ver['far']:.4f}", f"{round(ver['far'] * ver['impostor'])}/{ver['impostor']} impostor pairs"),
              _row("ROC AUC", f"{ver['auc']:.4f}", ""),
              _row("equal error rate", f"{ver['eer']:.4f}", f"at threshold {ver['eer_threshold']:.3f}")]
    for item in ver["tar_at_far"]:
        note = f"threshold {item['threshold']:.4f}" + ("" if item["reliable"] else
                                                        f"; unreliable: {ver['impostor']} impostor pairs < 3/FAR")
        lines.append(_row(f"TAR at FAR {item['far_target']:g}", f"{item['tar']:.4f}", note))
    lines.append(_row("best threshold", f"{ver['best_threshold']:.3f}", f"accuracy {ver['best_accuracy']:.4f}"))
    if ident:
        lines += ["", f"identification: leave-one-photo-out, {ident['probes']} probes of {ident['people']} people "
                      f"(nearest photo scores a person; k={ident['k']} nearest faces)",
                  _row("rank-1", f"{ident['rank1']:.4f}", f"{round(ident['rank1'] * ident['probes'])}/{ident['probes']}"),
                  _row("rank-5", f"{ident['rank5']:.4f}", f"{round(ident['rank5'] * ident['probes'])}/{ident['probes']}")]
        o = ident["open_set"]
        if o:
            lines += [f"open set: strangers {', '.join(o['strangers'])} (share {o['share']:g}, seed {o['seed']}), "
                      f"threshold {o['threshold']:g}",
                      _row("strangers let in", f"{o['stranger_let_in_rate']:.4f}",
                           f"{o['strangers_let_in']}/{o['stranger_probes']} stranger photos"),
                      _row("enrolled refused", f"{o['enrolled_refused_rate']:.4f}",
                           f"{o['enrolled_refused']}/{o['enrolled_probes']} enrolled photos"),
                      _row("enrolled as someone else", f"{o['enrolled_wrong_person']}", "")]
    elif ident is None and not report["inputs"]["people"]:
        lines += ["", "identification: not computed (the pairs file does not name people)"]
    lines += ["", f"photos not used: {len(report['refused'])}"]
    lines += [f"  {r['code']:<15} {r['message']}" for r in report["refused"]]  # the message names the photo
    for name in report.get("figures", []):
        lines.append(f"figure: {name}")
    return "\n".join(lines)


def format_calibration(cal: dict) -> str:
    """Calibration as text: the threshold, its cost, and a confidence note."""
    lines = [f"threshold for FAR <= {cal['far_target']:g}: {cal['threshold']:.4f} (accept when distance < threshold)",
             f"  at it: FAR {cal['far']:.4f} ({cal['false_accepts']}/{cal['impostor_pairs']} impostor pairs), "
             f"TAR {cal['tar']:.4f}, accuracy {cal['accuracy']:.4f} ({cal['genuine_pairs']} genuine pairs)",
             f"  current threshold {cal['current_threshold']:.4g}: FAR {cal['current']['far']:.4f}, "
             f"TAR {cal['current']['tar']:.4f}, accuracy {cal['current']['accuracy']:.4f}"]
    if cal["reliable"]:
        lines.append(f"  the estimate rests on {cal['impostor_pairs']} impostor pairs "
                     f"(at least 3/FAR = {cal['impostor_pairs_needed']} needed)")
    else:
        lines.append(f"  unreliable: the estimate rests on {cal['impostor_pairs']} impostor pairs; with no false "
                     f"accept in n pairs the 95% upper bound on FAR is about 3/n = {cal['far_upper_bound_95']:.2g}, "
                     f"above the target. Use at least {cal['impostor_pairs_needed']} impostor pairs.")
    return "\n".join(lines)


def _row(name: str, value: str, note: str) -> str:
    return f"  {name:<26}{value:>10}  {note}".rstrip()


# ---- command entry points ------------------------------------------------------------------------

def run_evaluate(inputs: Sequence[Path], config: Config, get_pipeline: Callable[[], object], model_id: str,
                 strangers: float = 0.2, seed: int = 0, figures: Path | None = None,
                 draw: bool = True) -> dict:
    """``facerec evaluate``: the report, with figures written to ``figures`` (default <home>/reports)."""
    if not 0 <= strangers < 1:
        raise EvaluationInputError(f"--strangers must be in [0, 1), got {strangers}")
    ev = encode_dataset(load_inputs(inputs), config, get_pipeline, model_id)
    report = build_report(ev, config, model_id, strangers, seed)
    if draw:
        from service.figures import write_figures

        folder = figures if figures is not None else config.home / "reports"
        report["figures"] = [str(p) for p in write_figures(ev.distances, ev.same, config.threshold, folder)]
    return report


def run_calibrate(inputs: Sequence[Path], config: Config, get_pipeline: Callable[[], object], model_id: str,
                  target: float = 1e-3, write: bool = False) -> dict:
    """``facerec calibrate``: the threshold for a target FAR; ``write`` stores it in the config file."""
    ev = encode_dataset(load_inputs(inputs), config, get_pipeline, model_id)
    cal = calibration_report(ev, target, config.threshold)
    if write:
        if config.source is None:
            raise EvaluationInputError("no config file to write the threshold to")
        cal["written"] = str(config.source)
        cal["backup"] = str(write_threshold(Path(config.source), cal["threshold"]))
    return cal
