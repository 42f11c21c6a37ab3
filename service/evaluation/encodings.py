"""Each evaluation photo encoded once: its dominant face's encoding, or why it cannot be used.

Encodings and refusals are cached in one SQLite file by photo sha256 and a key naming the model,
the detection settings and the one-face rule, so a second run does not touch the model.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from service.app.photos import Photo, single_faces
from service.app.rules import DOMINANCE
from service.config import Config
from service.errors import FacerecError, ImageNotFound
from service.pipeline.head import Head
from service.pipeline.model_id import base_model_id
from service.roster.codec import ENCODING_BYTES, encoding_from_bytes, encoding_to_bytes

log = logging.getLogger(__name__)

PHOTO_PLACEHOLDER = "{photo}"


@dataclass(frozen=True)
class Encoded:
    """One photo's outcome: its encoding, or why it could not be used."""

    encoding: np.ndarray | None
    code: str | None = None
    message: str | None = None


def cache_key(config: Config, model_id: str) -> str:
    """The network's model id (a trained head is applied after the cache: one cache serves every head),
    the detection settings and the one-face rule: each changes which face, or which crop, a photo gives."""
    model_id = base_model_id(model_id)
    if not config.detect:
        return f"{model_id}|no-detect"
    det = config.detection
    return (f"{model_id}|detect max_side={det.max_side} min_face={det.min_face} "
            f"min_confidence={det.min_confidence} margin={det.margin}|dominant x{DOMINANCE:g}")


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
            if vector is not None and len(vector) == ENCODING_BYTES:
                found[digest] = Encoded(encoding_from_bytes(vector))
            elif vector is None and code:
                found[digest] = Encoded(None, code, message)
        return found

    def put(self, items: dict[str, Encoded], model: str) -> None:
        rows = [(digest, model, None if e.encoding is None else encoding_to_bytes(e.encoding), e.code, e.message)
                for digest, e in items.items()]
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO encodings VALUES (?, ?, ?, ?, ?)", rows)

    def close(self) -> None:
        self.db.close()


def photo_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def encode_photos(photos: Sequence[Path], get_pipeline: Callable[[], object], cache: EncodingCache, model: str,
                  batch_size: int = 32, progress: bool = True, head: Head | None = None) -> list[Encoded]:
    """Each photo's encoding or refusal; only photos the cache lacks reach the pipeline.

    ``get_pipeline`` is called only when something must be encoded, so a fully cached run never loads
    the model. Results are cached batch by batch: an interrupted run keeps what it did. The cache holds
    the network's own encodings; ``head``, if given, is applied to what is returned.
    """
    from tqdm import tqdm

    digests: list[str | None] = []
    missing: dict[int, Encoded] = {}
    for n, photo in enumerate(photos):
        try:
            digests.append(photo_sha256(photo))
        except OSError:
            digests.append(None)
            missing[n] = Encoded(None, ImageNotFound.code, f"cannot read '{photo}'")
    outcomes = cache.get((d for d in digests if d), model)
    todo: dict[str, Path] = {}
    for digest, photo in zip(digests, photos):
        if digest and digest not in outcomes and digest not in todo:
            todo[digest] = photo
    if todo:
        pipeline = get_pipeline()
        if hasattr(pipeline, "without_head"):
            pipeline = pipeline.without_head()
        made_by = getattr(pipeline, "model_id", None)
        if made_by is not None and base_model_id(made_by) != made_by:
            # The cache is keyed by the network's id: a head's encodings in it would be headed twice.
            raise ValueError(f"encode_photos needs the network's own encodings, got {made_by}")
        items = list(todo.items())
        with tqdm(total=len(items), unit="photo", desc="encode", file=sys.stderr,
                  disable=None if progress else True) as bar:
            for start in range(0, len(items), batch_size):
                chunk = [(digest, Photo.from_path(path)) for digest, path in items[start:start + batch_size]]
                done = {digest: _encoded(photo, single)
                        for (digest, photo), single in zip(chunk, single_faces(pipeline, [p for _, p in chunk]))}
                cache.put(done, model)
                outcomes.update(done)
                bar.update(len(chunk))
    results = []
    for n, (digest, photo) in enumerate(zip(digests, photos)):
        if n in missing:
            results.append(missing[n])
            continue
        result = outcomes[digest]
        if result.message and PHOTO_PLACEHOLDER in result.message:
            result = Encoded(None, result.code, result.message.replace(PHOTO_PLACEHOLDER, f"'{photo}'"))
        results.append(result)
    return _with_head(results, head) if head is not None else results


def _with_head(results: list[Encoded], head: Head) -> list[Encoded]:
    rows = [n for n, r in enumerate(results) if r.encoding is not None]
    if not rows:
        return results
    mapped = head.apply(np.stack([results[n].encoding for n in rows]))
    results = list(results)
    for n, vector in zip(rows, mapped):
        results[n] = Encoded(vector)
    return results


def _encoded(photo: Photo, single) -> Encoded:
    if isinstance(single, FacerecError):
        # Stored without the path: the same bytes may come back under another name.
        return Encoded(None, single.code, single.message.replace(photo.name, PHOTO_PLACEHOLDER))
    return Encoded(np.asarray(single.face.encoding, np.float32))
