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


def encoding_model_id(weights_id: str, normalization: str, flip: bool, head_id: str | None = None) -> str:
    """Names weights, input handling and head: encodings made differently must not be compared either."""
    return f"{weights_id}/{normalization}{'+flip' if flip else ''}{f'/{head_id}' if head_id else ''}"


def base_model_id(model_id: str) -> str:
    """The id of the network's own encodings, before any head (what evaluation and training cache)."""
    return model_id.split("/head@", 1)[0]


def configured_model_id(config) -> str:
    """The id the configured pipeline stamps on its encodings (hashes the weights file, ~0.1 s)."""
    from service.errors import ModelError

    weights = config.model.weights
    if not weights.is_file():
        raise ModelError(f"FaceNet weights not found at {weights}; run `make models` to fetch them")
    head_id = None
    if config.model.head is not None:
        from service.pipeline.head import load_head

        head_id = load_head(config.model.head).head_id
    return encoding_model_id(weights_model_id(file_sha256(weights)), config.model.normalization, config.model.flip,
                             head_id)
