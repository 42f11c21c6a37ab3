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
