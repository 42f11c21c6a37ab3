"""The triplet loss FaceNet is trained with (Schroff et al. 2015)."""

from __future__ import annotations

import tensorflow as tf


def triplet_loss(anchor, positive, negative, alpha: float = 0.2):
    """Sum over the batch of ``max(||a - p||^2 - ||a - n||^2 + alpha, 0)``.

    Squared distances are summed over the encoding axis only, so the hinge applies to each triplet on
    its own: a well-separated triplet must not pay for a badly separated one (the exercise's first
    version summed over the whole batch before the max, which lets them cancel).
    """
    anchor, positive, negative = (tf.convert_to_tensor(t, dtype=tf.float32) for t in (anchor, positive, negative))
    pos_dist = tf.reduce_sum(tf.square(anchor - positive), axis=-1)
    neg_dist = tf.reduce_sum(tf.square(anchor - negative), axis=-1)
    return tf.reduce_sum(tf.maximum(pos_dist - neg_dist + alpha, 0.0))


def anchored_batch_hard_loss(embeddings, labels, alpha: float = 0.2, threshold: float = 0.7,
                             above_share: float = 0.2):
    """Mean over a batch of many people of the triplet loss of each photo's hardest triplet, anchored
    to the product's threshold.

    Each photo is an anchor with its farthest same-person photo and its nearest other-person photo in
    the batch (batch-hard mining), and pays ``triplet_loss`` on that triplet. Being ranked right is not
    enough when decisions are made at a fixed threshold, so the same two distances are also pinned
    around it: squared same-person distances must fall below ``threshold**2 - (1 - above_share) *
    alpha`` and different-person ones stay above ``threshold**2 + above_share * alpha``, the margin
    straddling the threshold. A photo whose person has no other photo in the batch is a negative only.
    """
    y = tf.convert_to_tensor(embeddings, dtype=tf.float32)
    labels = tf.convert_to_tensor(labels)
    squared = tf.maximum(2.0 - 2.0 * tf.matmul(y, y, transpose_b=True), 0.0)  # unit rows
    same = tf.equal(labels[:, None], labels[None, :])
    positive = tf.logical_and(same, tf.logical_not(tf.eye(tf.shape(y)[0], dtype=tf.bool)))
    has_positive = tf.reduce_any(positive, axis=1)
    hardest_positive = tf.reduce_max(tf.where(positive, squared, -1.0), axis=1)
    hardest_negative = tf.reduce_min(tf.where(same, 4.0 + alpha, squared), axis=1)
    ranked = tf.maximum(hardest_positive - hardest_negative + alpha, 0.0)
    below = tf.maximum(hardest_positive - (threshold ** 2 - (1.0 - above_share) * alpha), 0.0)
    above = tf.maximum(threshold ** 2 + above_share * alpha - hardest_negative, 0.0)
    per_photo = tf.where(has_positive, ranked + below, 0.0) + above
    return tf.reduce_mean(per_photo)
