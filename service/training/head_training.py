"""Learning a head on frozen FaceNet encodings with the anchored triplet loss.

The head is ``normalize(W e + b)``, started at the identity. Training draws batches of many people
(a few photos each, plus people with one photo as extra negatives), mines each photo's hardest
triplet in the batch (``losses.anchored_batch_hard_loss``), and pulls ``W`` towards the identity
(weight decay): measured on LFW's folds, an unconstrained ``W`` learns the training people and
separates new people worse than the network alone. Training stops when the loss on people held out
of training has not improved for ``patience`` checks, and keeps the best head seen.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from typing import Iterator, Sequence

import numpy as np

from service.errors import EvaluationInputError
from service.pipeline.head import SIZE, Head


@dataclass(frozen=True)
class HeadSettings:
    """What ``facerec train`` may set; the defaults are those measured best on LFW folds 1-5."""

    threshold: float = 0.7
    alpha: float = 0.2
    above_share: float = 0.2
    people_per_batch: int = 64
    photos_per_person: int = 4
    learning_rate: float = 0.01
    weight_decay: float = 0.1
    max_steps: int = 3000
    check_every: int = 100
    patience: int = 10
    holdout: float = 0.1
    seed: int = 0

    def as_json(self) -> dict:
        return asdict(self)


@dataclass
class TrainedHead:
    head: Head
    best_step: int
    steps: int
    history: list[dict] = field(default_factory=list)  # {"step", "train_loss", "holdout_loss"} per check


def split_people(people: Sequence[str], share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the people kept for fitting and rows of a seeded ``share`` of people held out."""
    names = sorted(set(people))
    held = set(np.random.default_rng(seed).choice(names, size=max(1, int(round(share * len(names)))),
                                                  replace=False).tolist()) if share > 0 else set()
    mask = np.array([p in held for p in people])
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def batches(rows: np.ndarray, people: Sequence[str], settings: HeadSettings,
            rng: np.random.Generator) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Endless (row indices, person labels) batches of ``people_per_batch`` people with two or more
    photos (up to ``photos_per_person`` each) and half as many one-photo people as extra negatives."""
    by_person: dict[str, list[int]] = {}
    for row in rows:
        by_person.setdefault(people[row], []).append(int(row))
    several = sorted(p for p, r in by_person.items() if len(r) >= 2)
    single = sorted(p for p, r in by_person.items() if len(r) == 1)
    if len(several) < 2:
        raise EvaluationInputError(f"training needs at least two people with two or more usable photos; "
                                   f"got {len(several)}")
    take = min(settings.people_per_batch, len(several))
    extra = min(take // 2, len(single))
    while True:
        chosen = rng.choice(len(several), size=take, replace=False)
        idx, labels = [], []
        for label, n in enumerate(chosen):
            photos = by_person[several[n]]
            picked = rng.choice(photos, size=min(settings.photos_per_person, len(photos)), replace=False)
            idx += picked.tolist()
            labels += [label] * len(picked)
        for n, k in enumerate(rng.choice(len(single), size=extra, replace=False) if extra else []):
            idx.append(by_person[single[k]][0])
            labels.append(take + n)
        yield np.array(idx, np.int64), np.array(labels, np.int64)


def train_head(vectors: np.ndarray, people: Sequence[str], settings: HeadSettings = HeadSettings(),
               progress: bool = True) -> TrainedHead:
    """Fit a head to ``vectors`` (unit encodings) labelled by ``people``; seeded, so repeatable."""
    import tensorflow as tf
    from tqdm import tqdm

    from service.training.losses import anchored_batch_hard_loss

    people = list(people)
    fit_rows, held_rows = split_people(people, settings.holdout, settings.seed)
    rng = np.random.default_rng(settings.seed)
    tf.random.set_seed(settings.seed)
    data = tf.constant(np.asarray(vectors, np.float32))
    weight = tf.Variable(tf.eye(SIZE))
    bias = tf.Variable(tf.zeros(SIZE))
    optimizer = tf.keras.optimizers.Adam(settings.learning_rate)
    loss_args = dict(alpha=settings.alpha, threshold=settings.threshold, above_share=settings.above_share)

    def loss_of(idx, labels):
        mapped = tf.math.l2_normalize(tf.matmul(tf.gather(data, idx), weight, transpose_b=True) + bias, axis=1)
        return anchored_batch_hard_loss(mapped, labels, **loss_args)

    @tf.function(reduce_retracing=True)
    def step(idx, labels):
        with tf.GradientTape() as tape:
            triplet = loss_of(idx, labels)
            total = triplet + settings.weight_decay * tf.reduce_sum(tf.square(weight - tf.eye(SIZE)))
        optimizer.apply_gradients(zip(tape.gradient(total, [weight, bias]), [weight, bias]))
        return triplet

    held_batches = _fixed_batches(held_rows, people, settings) if len(held_rows) else []

    def held_loss() -> float | None:
        if not held_batches:
            return None
        return float(np.mean([float(loss_of(tf.constant(i), tf.constant(l))) for i, l in held_batches]))

    best = (held_loss(), 0, weight.numpy(), bias.numpy())
    history, recent, waited, done = [], [], 0, 0
    source = batches(fit_rows, people, settings, rng)
    with tqdm(total=settings.max_steps, desc="train", unit="step", file=sys.stderr,
              disable=None if progress else True) as bar:
        for done in range(1, settings.max_steps + 1):
            idx, labels = next(source)
            recent.append(float(step(tf.constant(idx), tf.constant(labels))))
            bar.update(1)
            if done % settings.check_every and done < settings.max_steps:
                continue
            check = {"step": done, "train_loss": float(np.mean(recent)), "holdout_loss": held_loss()}
            history.append(check)
            recent = []
            bar.set_postfix(loss=f"{check['train_loss']:.4f}",
                            holdout="-" if check["holdout_loss"] is None else f"{check['holdout_loss']:.4f}")
            if check["holdout_loss"] is None or best[0] is None or check["holdout_loss"] < best[0]:
                best, waited = (check["holdout_loss"], done, weight.numpy(), bias.numpy()), 0
            else:
                waited += 1
                if waited >= settings.patience:
                    break
    head = Head(best[2].astype(np.float32), best[3].astype(np.float32))
    if not (np.isfinite(head.weight).all() and np.isfinite(head.bias).all()):
        raise EvaluationInputError("training diverged (the head's numbers are not finite); lower the learning rate")
    return TrainedHead(head, best[1], done, history)


def _fixed_batches(rows: np.ndarray, people: Sequence[str], settings: HeadSettings, count: int = 8):
    """The same held-out batches at every check, so their losses compare."""
    source = batches(rows, people, settings, np.random.default_rng(settings.seed + 1))
    try:
        return [next(source) for _ in range(count)]
    except EvaluationInputError:  # too few held-out people with two photos: no early stopping
        return []


def batch_loss(head: Head | None, vectors: np.ndarray, people: Sequence[str], settings: HeadSettings,
               count: int = 16) -> float | None:
    """The anchored triplet loss of ``head`` (None: the network alone) over ``count`` seeded batches of
    these people: the training objective, measured where the head was not trained."""
    import tensorflow as tf

    from service.training.losses import anchored_batch_hard_loss

    people = list(people)
    vectors = np.asarray(vectors, np.float32)
    mapped = head.apply(vectors) if head is not None else vectors
    fixed = _fixed_batches(np.arange(len(people)), people, settings, count)
    if not fixed:
        return None
    return float(np.mean([float(anchored_batch_hard_loss(tf.constant(mapped[idx]), tf.constant(labels),
                                                         settings.alpha, settings.threshold, settings.above_share))
                          for idx, labels in fixed]))
