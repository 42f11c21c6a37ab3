"""The numbers of a verification evaluation: rates, ROC, AUC, EER and thresholds from pair distances
(identification's are in ``service.evaluation.identification``).

Conventions (those of ``service.app.rules``): distances are L2 between unit encodings and a pair is
accepted iff ``distance < threshold`` (strict).

Verification works on :class:`PairDistances`, each class's distances sorted, never on one array of
every pair and its labels: each number is a count of distances below a cut, which ``searchsorted``
gives without a copy. 13,000 photos (LFW's size) make 84M pairs: 338 MB of float32 impostor distances,
where the dense form this replaced peaked at 18 GB (bench/evaluate_memory.py).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from service.errors import EvaluationInputError

TARGET_FARS = (1e-2, 1e-3)
MAX_DISTANCE = 2.0  # unit vectors are at most 2 apart; also the config's upper bound on the threshold
THRESHOLD_DECIMALS = 4
EXACT_PAIRS = 16_000_000  # a class of all-pairs distances up to this many is kept as float64 (128 MB)
BLOCK_ROWS = 256  # photos whose pairs with every later photo are formed together
CHUNK = 1 << 20  # distances handled at a time where a whole class would need a temporary of its size
NEAR = 1e-4  # squared distances below this are recomputed directly: the product form cancels there


@dataclass(frozen=True)
class PairDistances:
    """Verification pairs as two ascending distance arrays, ``genuine`` (same person) and ``impostor``.

    Each is float64, or float32 where a class is too large to keep in float64 (see
    :func:`all_pair_distances`); comparisons with thresholds are exact in float64 either way.
    """

    genuine: np.ndarray
    impostor: np.ndarray

    @classmethod
    def of(cls, genuine: Sequence[float], impostor: Sequence[float]) -> PairDistances:
        """From explicit distances, in any order (copied, float64, sorted)."""
        return cls(np.sort(np.asarray(genuine, np.float64).ravel()), np.sort(np.asarray(impostor, np.float64).ravel()))

    @classmethod
    def labelled(cls, distances: np.ndarray, same: np.ndarray) -> PairDistances:
        """From one array of pair distances and whether each pair shows one person."""
        distances, same = np.asarray(distances, np.float64), np.asarray(same, bool)
        return cls.of(distances[same], distances[~same])

    @property
    def pairs(self) -> int:
        return len(self.genuine) + len(self.impostor)


def count_below(values: np.ndarray, cuts, inclusive: bool = False) -> np.ndarray:
    """How many of the ascending ``values`` are ``< cut`` (``<=`` if ``inclusive``) for each cut, as in
    float64 even when ``values`` are float32.

    searchsorted would compare in float32 (rounding the cut) or copy ``values`` to float64; instead
    each cut becomes the float32 nearest it on the side that keeps the comparison's outcome.
    """
    cuts = np.asarray(cuts, np.float64)
    if values.dtype == np.float32:
        near = cuts.astype(np.float32)
        off = near > cuts if inclusive else near < cuts
        near[off] = np.nextafter(near[off], np.float32(-np.inf if inclusive else np.inf))
        cuts = near
    return np.searchsorted(values, cuts, side="right" if inclusive else "left")


def _chunks(values: np.ndarray) -> Iterator[np.ndarray]:
    yield from (values[start:start + CHUNK] for start in range(0, len(values), CHUNK))


# ---- forming the pairs ---------------------------------------------------------------------------

def pair_distances(vectors: np.ndarray, first: np.ndarray, second: np.ndarray, chunk: int = 65_536) -> np.ndarray:
    """L2 distance of each pair (rows ``first[n]``, ``second[n]``), in float64 so thresholds compare
    exactly; ``chunk`` pairs at a time, so memory does not grow with the number of pairs times 128."""
    vectors = np.asarray(vectors, np.float64)
    distances = np.empty(len(first), np.float64)
    for start in range(0, len(first), chunk):
        part = slice(start, start + chunk)
        distances[part] = np.linalg.norm(vectors[first[part]] - vectors[second[part]], axis=1)
    return distances


def all_pair_distances(vectors: np.ndarray, people: Sequence[str], exact_pairs: int = EXACT_PAIRS,
                       rows: int = BLOCK_ROWS) -> PairDistances:
    """Every unordered pair of photos, genuine when both show the same person, without ever holding
    the pairs' indices: ``rows`` photos at a time against every later photo.

    Distances are float64 (|a|^2 + |b|^2 - 2ab, with pairs nearer than sqrt(NEAR) recomputed as
    |a - b|), then stored into one preallocated array per class: float64 when a class has at most
    ``exact_pairs`` pairs, else float32 (rounding a distance by at most 6e-8). The arrays are sorted
    in place. Peak memory: the two arrays plus ``rows`` x photos float64 temporaries.
    """
    vectors = np.asarray(vectors, np.float64)
    codes = np.unique(np.asarray(people, dtype=object).astype(str), return_inverse=True)[1].ravel()
    n = len(vectors)
    counts = np.bincount(codes).astype(np.int64)
    n_gen = int((counts * (counts - 1) // 2).sum())
    n_imp = n * (n - 1) // 2 - n_gen
    dtypes = [np.dtype(np.float64 if size <= exact_pairs else np.float32) for size in (n_gen, n_imp)]
    _ensure_memory(n_gen * dtypes[0].itemsize + n_imp * dtypes[1].itemsize + 48 * rows * n, n_gen + n_imp)
    genuine, impostor = np.empty(n_gen, dtypes[0]), np.empty(n_imp, dtypes[1])
    squares = np.einsum("ij,ij->i", vectors, vectors)
    filled = [0, 0]
    for start in range(0, n, rows):
        block = slice(start, min(start + rows, n))
        d = _block_distances(vectors, squares, block)
        later = np.arange(start, n)[None, :] > np.arange(block.start, block.stop)[:, None]
        same = codes[block, None] == codes[None, start:]
        for k, (out, mask) in enumerate(((genuine, later & same), (impostor, later & ~same))):
            values = d[mask]
            out[filled[k]:filled[k] + len(values)] = values
            filled[k] += len(values)
    genuine.sort()
    impostor.sort()
    return PairDistances(genuine, impostor)


def _ensure_memory(needed: int, pairs: int) -> None:
    """Refuse, saying why, what would not fit: Linux grants a large array at once and kills the
    process later, when its pages are touched, instead of raising MemoryError."""
    available = _available_memory()
    if available is not None and needed > available:
        raise EvaluationInputError(f"{pairs:,} photo pairs need about {needed / 2**20:,.0f} MB of memory and "
                                   f"{available / 2**20:,.0f} MB is available; evaluate fewer photos, or give "
                                   f"a pairs file")


def _available_memory() -> int | None:
    """Bytes this process can still take: the system's MemAvailable, capped by a cgroup v2 limit."""
    found = []
    try:
        with open("/proc/meminfo") as meminfo:
            found += [int(line.split()[1]) * 1024 for line in meminfo if line.startswith("MemAvailable:")]
    except (OSError, ValueError, IndexError):
        pass
    cgroup = Path("/sys/fs/cgroup")  # a container's own limit, where it is mounted at the root
    try:
        limit = (cgroup / "memory.max").read_text().strip()
        if limit != "max":
            found.append(int(limit) - int((cgroup / "memory.current").read_text()))
    except (OSError, ValueError):
        pass
    return min(found) if found else None


def _block_distances(vectors: np.ndarray, squares: np.ndarray, block: slice) -> np.ndarray:
    """Distances from the photos of ``block`` to every photo from the block's first on (float64)."""
    d = squares[block, None] + squares[None, block.start:] - 2.0 * (vectors[block] @ vectors[block.start:].T)
    near = np.nonzero(d < NEAR)
    if len(near[0]):
        diff = vectors[near[0] + block.start] - vectors[near[1] + block.start]
        d[near] = np.einsum("ij,ij->i", diff, diff)
    return np.sqrt(d, out=d)


# ---- verification --------------------------------------------------------------------------------

def rates(pairs: PairDistances, threshold: float) -> dict:
    """Accuracy, true-accept and false-accept rates at one threshold (accept iff distance < threshold)."""
    n_gen, n_imp = len(pairs.genuine), len(pairs.impostor)
    gen, imp = (int(count_below(values, threshold)) for values in (pairs.genuine, pairs.impostor))
    return {"accuracy": (gen + n_imp - imp) / (n_gen + n_imp), "tar": gen / n_gen if n_gen else float("nan"),
            "far": imp / n_imp if n_imp else float("nan")}


def roc_at(pairs: PairDistances, cuts) -> tuple[np.ndarray, np.ndarray]:
    """(FAR, TAR) at each threshold of ``cuts`` (accept ``distance < cut``)."""
    return (count_below(pairs.impostor, cuts) / max(len(pairs.impostor), 1),
            count_below(pairs.genuine, cuts) / max(len(pairs.genuine), 1))


def auc(pairs: PairDistances) -> float:
    """Area under the empirical ROC, ties counting half: P(genuine < impostor) + P(equal) / 2 (the
    Mann-Whitney statistic), which is exactly the area of the trapezoids through every ROC point.

    Counted over the smaller class, a chunk at a time, each distance against the other class.
    """
    gen, imp = pairs.genuine, pairs.impostor
    flip = len(gen) > len(imp)
    walk, other = (imp, gen) if flip else (gen, imp)
    wins = ties = 0
    for part in _chunks(walk):
        below, upto = count_below(other, part), count_below(other, part, inclusive=True)
        wins += int(below.sum()) if flip else int((len(other) - upto).sum())
        ties += int((upto - below).sum())
    return (wins + ties / 2) / (len(gen) * len(imp))


# The ROC's cuts are every distinct distance plus +inf (accept all): these find the few that matter
# by binary search on the two sorted classes instead of listing all of them.

def _first_cut(pairs: PairDistances, holds) -> float:
    """The smallest cut where ``holds(cut)``, a condition false below some cut and true from it on."""
    best = math.inf
    for values in (pairs.genuine, pairs.impostor):
        k = bisect.bisect_left(range(len(values)), True, key=lambda j: holds(float(values[j])))
        if k < len(values):
            best = min(best, float(values[k]))
    return best


def _previous_cut(pairs: PairDistances, cut: float) -> float | None:
    """The largest distance below ``cut``, or None when ``cut`` is the first."""
    found = [float(v[k - 1]) for v in (pairs.genuine, pairs.impostor) if (k := int(count_below(v, cut))) > 0]
    return max(found) if found else None


def _next_cuts(pairs: PairDistances, values: np.ndarray) -> np.ndarray:
    """The cut just above each of ``values``: the next larger distance, or inf."""
    after = np.full(len(values), np.inf)
    for v in (pairs.genuine, pairs.impostor):
        k = count_below(v, values, inclusive=True)
        inside = k < len(v)
        after[inside] = np.minimum(after[inside], v[k[inside]])
    return after


def equal_error_rate(pairs: PairDistances) -> tuple[float, float]:
    """(EER, threshold) where FAR = FRR, linearly interpolated on the ROC segment where they cross.

    FAR rises and FRR = 1 - TAR falls with the threshold; between the last cut with FAR < FRR and the
    next, both are taken as linear (in the threshold too, which the returned threshold is).
    """
    def gap(cut: float) -> tuple[float, float]:
        far, tar = roc_at(pairs, [cut])
        return float(far[0] - (1.0 - tar[0])), float(far[0])

    cut = _first_cut(pairs, lambda c: gap(c)[0] >= 0)
    (gap_k, far_k), previous = gap(cut), _previous_cut(pairs, cut)
    if previous is None or gap_k == 0:
        return far_k, cut
    gap_p, far_p = gap(previous)
    w = -gap_p / (gap_k - gap_p)
    upper = cut if math.isfinite(cut) else MAX_DISTANCE
    return float(far_p + w * (far_k - far_p)), float(previous + w * (upper - previous))


def threshold_for_far(pairs: PairDistances, target: float) -> float:
    """The largest threshold whose empirical FAR is at most ``target``.

    With n impostor distances sorted, k = floor(target * n) false accepts are allowed; accepting
    ``distance < s[k]`` lets in at most k, and any higher threshold lets in s[k] too. The value is
    rounded *down* to the printed precision so the written threshold keeps the guarantee.
    """
    impostor = pairs.impostor
    allowed = int(math.floor(target * len(impostor) + 1e-9))
    cut = float(impostor[allowed]) if allowed < len(impostor) else MAX_DISTANCE
    scale = 10 ** THRESHOLD_DECIMALS
    return max(math.floor(min(cut, MAX_DISTANCE) * scale) / scale, 1 / scale)


def best_threshold(pairs: PairDistances) -> tuple[float, float]:
    """(threshold, accuracy) maximising accuracy; the threshold is the middle of its winning gap.

    Every threshold in (previous distinct distance, winning cut] gives the same accuracy; the middle
    is the choice least sensitive to new photos. Accuracy only rises past a genuine distance, so the
    first cut of highest accuracy is the first cut or the one just above a genuine distance.
    """
    n_gen, n_imp = len(pairs.genuine), len(pairs.impostor)
    first = min(float(pairs.genuine[0]), float(pairs.impostor[0]))
    best_cut, best_acc = first, -1.0
    for cuts in [np.array([first])] + [_next_cuts(pairs, _distinct(part)) for part in _chunks(pairs.genuine)]:
        far, tar = roc_at(pairs, cuts)
        accuracy = (tar * n_gen + (1 - far) * n_imp) / (n_gen + n_imp)
        k = int(np.argmax(accuracy))
        if accuracy[k] > best_acc:  # cuts only grow from chunk to chunk: the first maximum is kept
            best_cut, best_acc = float(cuts[k]), float(accuracy[k])
    lower = _previous_cut(pairs, best_cut)
    upper = best_cut if math.isfinite(best_cut) else MAX_DISTANCE
    return float(((lower if lower is not None else 0.0) + upper) / 2), best_acc


def _distinct(ascending: np.ndarray) -> np.ndarray:
    return ascending[np.concatenate(([True], ascending[1:] != ascending[:-1]))]


def verification_report(pairs: PairDistances, threshold: float) -> dict:
    """Every verification number the report shows.

    ``verification_report(pairs, threshold)``: ``pairs`` is a :class:`PairDistances`: an
    evaluation's ``Evaluation.pairs``, or made from explicit distances with
    ``PairDistances.of(genuine, impostor)`` (two arrays, any order) or
    ``PairDistances.labelled(distances, same)``. A pair is accepted iff ``distance < threshold``.
    """
    n_gen, n_imp = len(pairs.genuine), len(pairs.impostor)
    if n_gen == 0 or n_imp == 0:
        raise EvaluationInputError(f"need both genuine and impostor pairs; got {n_gen} genuine and {n_imp} impostor")
    eer, eer_threshold = equal_error_rate(pairs)
    best, best_acc = best_threshold(pairs)
    at_far = []
    for target in TARGET_FARS:
        t = threshold_for_far(pairs, target)
        at_far.append({"far_target": target, "threshold": t, **rates(pairs, t), "reliable": n_imp >= 3 / target})
    return {"pairs": pairs.pairs, "genuine": n_gen, "impostor": n_imp, "threshold": threshold,
            **rates(pairs, threshold), "auc": auc(pairs), "eer": eer, "eer_threshold": eer_threshold,
            "tar_at_far": at_far, "best_threshold": best, "best_accuracy": best_acc,
            "genuine_distance": _summary(pairs.genuine), "impostor_distance": _summary(pairs.impostor)}


def _summary(ascending: np.ndarray) -> dict:
    n = len(ascending)
    median = float(ascending[n // 2]) if n % 2 else (float(ascending[n // 2 - 1]) + float(ascending[n // 2])) / 2
    return {"min": float(ascending[0]), "median": median, "max": float(ascending[-1]),
            "mean": float(np.mean(ascending, dtype=np.float64))}
