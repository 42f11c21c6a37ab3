"""triplet_loss against values worked out by hand."""

import numpy as np
import pytest

from service.training.losses import triplet_loss


def test_hinge_applies_per_triplet_not_to_the_batch_sum():
    # Triplet 1: ||a-p||^2 = 2, ||a-n||^2 = 1 -> 2 - 1 + 0.2 = 1.2 (violates the margin).
    # Triplet 2: ||a-p||^2 = 1, ||a-n||^2 = 4 -> 1 - 4 + 0.2 < 0 -> 0 (well separated).
    anchor = [[0.0, 0.0], [0.0, 0.0]]
    positive = [[1.0, 1.0], [0.0, 1.0]]
    negative = [[1.0, 0.0], [2.0, 0.0]]
    # Summing distances over the whole batch first (the exercise's first version) would give
    # max(3 - 5 + 0.2, 0) = 0 and hide the bad triplet.
    assert float(triplet_loss(anchor, positive, negative)) == pytest.approx(1.2, abs=1e-6)


def test_equal_distances_cost_the_margin_each():
    a, p, n = [[0.0]] * 3, [[1.0]] * 3, [[-1.0]] * 3
    assert float(triplet_loss(a, p, n, alpha=0.2)) == pytest.approx(0.6, abs=1e-6)
    assert float(triplet_loss(a, p, n, alpha=0.5)) == pytest.approx(1.5, abs=1e-6)


def test_matches_the_formula_on_random_128d_batches():
    rng = np.random.default_rng(7)
    a, p, n = (rng.normal(size=(16, 128)).astype(np.float32) for _ in range(3))
    expected = sum(max(((a[i] - p[i]) ** 2).sum() - ((a[i] - n[i]) ** 2).sum() + 0.2, 0.0) for i in range(16))
    assert float(triplet_loss(a, p, n)) == pytest.approx(expected, rel=1e-5)


def test_well_separated_batch_costs_nothing():
    a = [[0.0, 0.0]]
    assert float(triplet_loss(a, [[0.1, 0.0]], [[3.0, 0.0]])) == 0.0
