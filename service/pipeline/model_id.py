"""Which model made an encoding: weights hash plus input handling, known without loading TensorFlow."""

from __future__ import annotations

import hashlib
from pathlib import Path

MODEL_NAME = "facenet-keras-inception-resnet-v1"


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in chunks (the weights are ~90 MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def weights_model_id(sha256: str) -> str:
    """Names network and weights: encodings of different weights must never be compared."""
    return f"{MODEL_NAME}@sha256:{sha256[:16]}"


def encoding_model_id(weights_id: str, normalization: str, flip: bool) -> str:
    """Names weights and input handling: encodings made differently must not be compared either."""
    return f"{weights_id}/{normalization}{'+flip' if flip else ''}"


def configured_model_id(config) -> str:
    """The id the configured pipeline stamps on its encodings (hashes the weights file, ~0.1 s)."""
    from service.errors import ModelError

    weights = config.model.weights
    if not weights.is_file():
        raise ModelError(f"FaceNet weights not found at {weights}; run `make models` to fetch them")
    return encoding_model_id(weights_model_id(file_sha256(weights)), config.model.normalization, config.model.flip)
