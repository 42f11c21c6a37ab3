"""Synthetic rosters for the benchmarks: seeded random unit encodings written straight into a fresh
roster database with SQLAlchemy Core (the index does not care where vectors come from)."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Iterator

import numpy as np
from sqlalchemy import func, insert, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service.roster.codec import encoding_to_bytes  # noqa: E402
from service.roster.database import (  # noqa: E402
    FaceRow, PersonRow, bump_generation, make_engine, session_factory, upgrade_database,
)

DIM = 128
CHUNK = 20_000  # rows per transaction


def unit_chunks(n: int, seed: int, chunk: int = CHUNK) -> Iterator[np.ndarray]:
    """``n`` seeded random unit vectors, ``chunk`` at a time (the same sequence for the same seed)."""
    rng = np.random.default_rng(seed)
    for start in range(0, n, chunk):
        block = rng.standard_normal((min(chunk, n - start), DIM), dtype=np.float32)
        yield block / np.linalg.norm(block, axis=1, keepdims=True)


def external_id(person: int) -> str:
    return f"E{person:07d}"


def write_roster(database: str, n: int, seed: int, model_id: str, faces_per_person: int) -> float:
    """Migrate a new database and insert ``n`` faces of people ``E0000001``... (``faces_per_person``
    each), ``CHUNK`` rows per transaction, then one generation bump; returns the seconds taken."""
    rng = np.random.default_rng(seed + 1)  # photo hashes and boxes; vectors come from unit_chunks
    start = time.perf_counter()
    engine = make_engine(database)
    try:
        upgrade_database(engine)
        sessions = session_factory(engine)
        with sessions() as session:
            if session.scalar(select(func.count(PersonRow.id))):
                raise RuntimeError(f"{database} is not empty: synthetic ids would collide")
        now = datetime.now(UTC)
        face_id = 0
        for vectors in unit_chunks(n, seed, CHUNK - CHUNK % faces_per_person):
            first_person = face_id // faces_per_person + 1
            last_person = (face_id + len(vectors) - 1) // faces_per_person + 1
            people = [{"id": p, "external_id": external_id(p), "name": f"Person {p}", "active": True,
                       "attributes": None, "created_at": now, "updated_at": now}
                      for p in range(first_person, last_person + 1)]
            boxes = rng.uniform(0, 200, (len(vectors), 4))
            scores = rng.uniform(0.8, 1.0, len(vectors))
            hashes = rng.bytes(32 * len(vectors)).hex()
            faces = []
            for row, vector in enumerate(vectors):
                face_id += 1
                x, y, w, h = boxes[row]
                faces.append({
                    "id": face_id, "person_id": (face_id - 1) // faces_per_person + 1,
                    "encoding": encoding_to_bytes(vector), "model_id": model_id,
                    "photo_sha256": hashes[64 * row:64 * row + 64],
                    "box_x": float(x), "box_y": float(y), "box_w": float(w), "box_h": float(h),
                    "score": float(scores[row]), "created_at": now, "updated_at": now,
                })
            with sessions() as session, session.begin():
                session.execute(insert(PersonRow), people)
                session.execute(insert(FaceRow), faces)
            del people, faces
        with sessions() as session, session.begin():
            bump_generation(session)
        return time.perf_counter() - start
    finally:
        engine.dispose()
