"""A trained head on top of FaceNet's encodings: ``normalize(W @ e + b)``, in NumPy.

The network's 128-d encodings separate people well but on their own distance scale; a head trained
with the triplet loss (``facerec train``) maps them so that the product's threshold is the right one.
A head is a folder holding ``head.npz`` (``weight`` 128x128, ``bias`` 128, float32) and the record of
how it was trained. Its id is the sha256 of its numbers, and it is part of the model id: encodings
made through different heads, or without one, are never compared.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from service.errors import ModelError

HEAD_FILE = "head.npz"
RECORD_FILE = "training.json"
SIZE = 128


@dataclass(frozen=True)
class Head:
    """The affine map and its id; apply it to unit encodings."""

    weight: np.ndarray
    bias: np.ndarray

    @property
    def sha256(self) -> str:
        """Hash of the numbers themselves (little-endian float32), not of the file that holds them."""
        digest = hashlib.sha256()
        for array in (self.weight, self.bias):
            digest.update(np.ascontiguousarray(array, dtype="<f4").tobytes())
        return digest.hexdigest()

    @property
    def head_id(self) -> str:
        return f"head@sha256:{self.sha256[:16]}"

    def apply(self, encodings: np.ndarray) -> np.ndarray:
        """(N, 128) unit encodings -> (N, 128) unit encodings on the head's scale."""
        mapped = np.asarray(encodings, np.float32) @ self.weight.T + self.bias
        norms = np.linalg.norm(mapped, axis=-1, keepdims=True)
        return (mapped / np.maximum(norms, 1e-12)).astype(np.float32)


def head_path(location: Path) -> Path:
    """The ``head.npz`` a configured location names (the head's folder, or the file itself)."""
    location = Path(location)
    return location / HEAD_FILE if location.is_dir() or location.suffix != ".npz" else location


def load_head(location: Path) -> Head:
    """Read and check a head; a missing or malformed one is a :class:`ModelError` naming the file."""
    path = head_path(location)
    try:
        with np.load(path, allow_pickle=False) as data:
            weight, bias = np.asarray(data["weight"], np.float32), np.asarray(data["bias"], np.float32)
    except FileNotFoundError:
        raise ModelError(f"encoding head not found at {path} (model.head in the config; "
                         "train one with `facerec train`, or set model.head to \"\" for none)") from None
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ModelError(f"encoding head {path} is unreadable: {exc}") from None
    if weight.shape != (SIZE, SIZE) or bias.shape != (SIZE,) or not (np.isfinite(weight).all() and np.isfinite(bias).all()):
        raise ModelError(f"encoding head {path} must hold a finite {SIZE}x{SIZE} weight and a {SIZE} bias")
    return Head(weight, bias)


def configured_head(config) -> Head | None:
    """The head ``model.head`` names, checked against the network it was trained on: a head trained
    on another network's encodings (other weights, normalisation, flip or precision) means nothing
    on these, so it is refused rather than applied."""
    if config.model.head is None:
        return None
    head = load_head(config.model.head)
    record = head_path(config.model.head).with_name(RECORD_FILE)
    try:
        trained_on = json.loads(record.read_text()).get("network_model_id")
    except (OSError, ValueError, AttributeError):
        trained_on = None  # a head without its record (made by hand): nothing to check it against
    if trained_on:
        from service.pipeline.model_id import makes_encodings_of

        if not makes_encodings_of(config, trained_on):
            raise ModelError(f"encoding head {head_path(config.model.head)} was trained on encodings of {trained_on}, "
                             "which this configuration does not make (weights, normalization or flip differ); "
                             "train a head for it, or set model.head to \"\"")
    return head


def save_head(head: Head, folder: Path, record: dict) -> Path:
    """Write ``head.npz`` and ``training.json`` into ``folder``, each atomically; returns the head file."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _atomic_write(folder / HEAD_FILE, lambda handle: np.savez(handle, weight=head.weight, bias=head.bias))
    text = json.dumps(_finite({"head_id": head.head_id, "sha256": head.sha256, **record}), indent=2,
                      allow_nan=False) + "\n"
    _atomic_write(folder / RECORD_FILE, lambda handle: handle.write(text.encode()))
    return folder / HEAD_FILE


def _finite(value):
    """NaN and infinities (a rate over no pairs) as null: JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def _atomic_write(target: Path, write) -> None:
    handle = tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", delete=False)
    try:
        with handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(handle.name, 0o644)  # a head is read by every replica, not a secret
        os.replace(handle.name, target)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
