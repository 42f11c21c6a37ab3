"""Synthetic face encodings whose distances look like FaceNet's: people as clusters, not uniform noise.

Uniform random unit vectors put every face about 1.41 from every other, with no person in them, and
are the hardest possible data for an approximate index. Real encodings have persons (a probe lies
0.2 to 1.2 from its own person's photos) and structure among persons (people resemble a shared mean
face and each other in groups), which is what an approximate index exploits and what it can get
wrong. Here, deterministically from a seed:

- a person's centre is ``mean_weight`` of a shared direction, ``group_weight`` of one of ``groups``
  group directions and a direction of their own, normalised; group and own directions are drawn
  with a variance spectrum of participation ratio ``center_dim`` (LFW's person centres: about 49);
- a face is its person's centre plus noise of participation ratio ``noise_dim`` (within-person
  variation: about 30 on the 5-celebrity set, 50 on LFW), scaled by the person's spread (uniform in
  ``spread``) times a per-face factor exp(N(0, ``face_sigma``)), normalised.

The defaults were fitted so that same-person pair distances match the 5-celebrity set's and
different-person pair distances, and each photo's nearest other person among 2,015 people, match
LFW's (bench/approximate_index.py prints both, for a reader to compare; docs/performance.md has
the figures). Face ``i`` belongs to person ``i // faces_per_person``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DIM = 128
BLOCK = 20_000  # people generated together: one seeded draw each, so any block can be made again alone


@dataclass(frozen=True)
class FaceModel:
    faces_per_person: int = 5
    spread: tuple[float, float] = (0.5, 0.9)
    face_sigma: float = 0.35
    noise_dim: float = 40.0
    center_dim: float = 30.0
    mean_weight: float = 0.25
    groups: int = 64
    group_weight: float = 0.9
    seed: int = 0


def spectrum(participation: float, dim: int = DIM) -> np.ndarray:
    """Exponentially decaying variances summing to 1 whose participation ratio, (sum v)^2 / sum v^2,
    is ``participation`` (1 to dim): how many dimensions the variation effectively spans."""
    if not 1 <= participation <= dim:
        raise ValueError(f"participation ratio must be in [1, {dim}], not {participation}")
    rank, low, high = np.arange(dim), 1e-3, 1e6
    for _ in range(80):  # bisection on the decay length: the ratio grows with it
        length = (low * high) ** 0.5
        variances = np.exp(-rank / length)
        variances /= variances.sum()
        low, high = (length, high) if 1 / (variances ** 2).sum() < participation else (low, length)
    return variances


class ClusteredFaces:
    """Faces and probes of synthetic people; every method gives the same numbers for the same model."""

    def __init__(self, model: FaceModel = FaceModel()):
        self.model = model
        rng = np.random.default_rng([model.seed, 0])
        self._center_shape = self._shaping(rng, model.center_dim)
        self._noise_shape = self._shaping(rng, model.noise_dim)
        mean = rng.standard_normal(DIM)
        self._mean = (mean / np.linalg.norm(mean)).astype(np.float32)
        self._groups = _unit(rng.standard_normal((model.groups, DIM)).astype(np.float32) @ self._center_shape)

    @staticmethod
    def _shaping(rng: np.random.Generator, participation: float) -> np.ndarray:
        """A matrix turning standard normal rows into rows of that spectrum along random axes."""
        axes, _ = np.linalg.qr(rng.standard_normal((DIM, DIM)))
        return (axes * np.sqrt(spectrum(participation))).T.astype(np.float32)

    def people(self, block: int) -> tuple[np.ndarray, np.ndarray]:
        """Centres (BLOCK, dim) and spreads (BLOCK,) of people block*BLOCK ... (block+1)*BLOCK - 1."""
        m = self.model
        rng = np.random.default_rng([m.seed, 1, block])
        own = _unit(rng.standard_normal((BLOCK, DIM), dtype=np.float32) @ self._center_shape)
        group = self._groups[rng.integers(0, m.groups, BLOCK)]
        centres = _unit(m.mean_weight * self._mean + m.group_weight * group + own)
        return centres, rng.uniform(*m.spread, BLOCK).astype(np.float32)

    def _faces_of(self, centres: np.ndarray, spreads: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        noise = rng.standard_normal(centres.shape, dtype=np.float32) @ self._noise_shape
        scale = spreads * np.exp(rng.normal(0.0, self.model.face_sigma, len(spreads))).astype(np.float32)
        return _unit(centres + noise * scale[:, None])

    def faces(self, n: int, out: np.ndarray | None = None) -> np.ndarray:
        """Faces 0 .. n-1, (n, dim) float32 unit vectors; face i is person i // faces_per_person's.
        ``out``: where to write them (say, a memory map, for rosters larger than memory should hold)."""
        per = self.model.faces_per_person
        out = np.empty((n, DIM), np.float32) if out is None else out
        for block in range(-(-n // (BLOCK * per))):
            first = block * BLOCK * per
            count = min(BLOCK * per, n - first)
            centres, spreads = self.people(block)
            people = np.arange(count) // per
            out[first:first + count] = self._faces_of(centres[people], spreads[people],
                                                      np.random.default_rng([self.model.seed, 2, block]))
        return out

    def probes(self, persons: np.ndarray, draw: int = 0) -> np.ndarray:
        """A new photo of each of ``persons`` (none of the enrolled faces), as a probe at a door."""
        persons = np.asarray(persons, np.int64)
        out = np.empty((len(persons), DIM), np.float32)
        for block in np.unique(persons // BLOCK):
            rows = np.flatnonzero(persons // BLOCK == block)
            centres, spreads = self.people(int(block))
            local = persons[rows] % BLOCK
            rng = np.random.default_rng([self.model.seed, 3, int(block), draw])
            out[rows] = self._faces_of(centres[local], spreads[local], rng)
        return out

    def person_of(self, faces: np.ndarray) -> np.ndarray:
        return np.asarray(faces) // self.model.faces_per_person


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(np.float32)
