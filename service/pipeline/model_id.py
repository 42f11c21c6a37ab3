"""Which model made an encoding: weights hash plus input handling, known without loading TensorFlow."""

from __future__ import annotations

import hashlib
from pathlib import Path

from service.config import PRECISIONS

MODEL_NAME = "facenet-keras-inception-resnet-v1"
# int8 is made by NNCF at this version (pinned in requirements.lock): the model id names it, since
# another version may quantise differently.
NNCF_VERSION = "3.4.0"


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in chunks (the weights are ~90 MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def weights_model_id(sha256: str, precision: str = "fp32") -> str:
    """Names network, weights and arithmetic: encodings of different weights must never be compared,
    and bfloat16 (up to ~0.03) and int8 (up to ~0.26) move encodings beyond what fp32 runtimes differ
    by (1e-4)."""
    return f"{MODEL_NAME}@sha256:{sha256[:16]}{precision_suffix(precision)}"


def precision_suffix(precision: str) -> str:
    """What a precision adds to the model id: nothing for fp32."""
    return {"fp32": "", "bf16": "+bf16", "int8": f"+int8-nncf{NNCF_VERSION}"}[precision]


def encoding_model_id(weights_id: str, normalization: str, flip: bool, head_id: str | None = None) -> str:
    """Names weights, input handling and head: encodings made differently must not be compared either."""
    return f"{weights_id}/{normalization}{'+flip' if flip else ''}{f'/{head_id}' if head_id else ''}"


def base_model_id(model_id: str) -> str:
    """The id of the network's own encodings, before any head (what evaluation and training cache)."""
    return model_id.split("/head@", 1)[0]


def makes_encodings_of(config, model_id: str) -> bool:
    """Whether this configuration's network makes the encodings ``model_id`` names, precision aside
    (bfloat16 and int8 encodings are within 0.03 and 0.26 of fp32's, with the same LFW accuracy: a head
    trained on one serves the others)."""
    handling = f"/{config.model.normalization}{'+flip' if config.model.flip else ''}"
    network = base_model_id(model_id)
    for precision in PRECISIONS[1:]:
        network = network.replace(precision_suffix(precision), "")
    if not network.endswith(handling):
        return False
    sha = config.expected_sha256  # the shipped weights' hash, known without reading them
    return sha is None or f"@sha256:{sha[:16]}/" in network


def configured_model_id(config, head=None) -> str:
    """The id the configured pipeline stamps on its encodings (hashes the weights file, ~0.1 s)."""
    from service.errors import ModelError

    weights = config.model.weights
    if not weights.is_file():
        raise ModelError(f"FaceNet weights not found at {weights}; run `make models` to fetch them")
    head_id = None
    if head is not None:
        head_id = head.head_id
    elif config.model.head is not None:
        from service.pipeline.head import configured_head

        head_id = configured_head(config).head_id
    return encoding_model_id(weights_model_id(file_sha256(weights), config.model.precision),
                             config.model.normalization, config.model.flip,
                             head_id)
