"""How an encoding is stored as bytes: 128 float32, little-endian (512 bytes), on every machine.

The one codec for the roster database and the evaluation cache: a native-order copy would read back
as noise on a big-endian host.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

ENCODING_SIZE = 128
ENCODING_DTYPE = np.dtype("<f4")
ENCODING_BYTES = ENCODING_SIZE * ENCODING_DTYPE.itemsize


def encoding_to_bytes(vector: Any) -> bytes:
    """A 128-number encoding as its 512 stored bytes."""
    array = np.asarray(vector, dtype=ENCODING_DTYPE)
    if array.shape != (ENCODING_SIZE,):
        raise ValueError(f"an encoding has shape ({ENCODING_SIZE},), not {array.shape}")
    return array.tobytes()


def encoding_from_bytes(data: bytes) -> np.ndarray:
    """The float32 vector of shape (128,) stored as ``data``; a fresh, writable array."""
    if len(data) != ENCODING_BYTES:
        raise ValueError(f"a stored encoding is {ENCODING_BYTES} bytes, not {len(data)}")
    return np.frombuffer(data, dtype=ENCODING_DTYPE).astype(np.float32)


def encodings_from_bytes(blobs: Iterable[bytes]) -> np.ndarray:
    """(n, 128) float32 from n stored encodings, decoded in one call (a call per row dominates at 1M)."""
    blobs = list(blobs)
    if any(len(blob) != ENCODING_BYTES for blob in blobs):
        raise ValueError(f"every stored encoding is {ENCODING_BYTES} bytes")
    data = b"".join(blobs)
    return np.frombuffer(data, dtype=ENCODING_DTYPE).astype(np.float32).reshape(len(blobs), ENCODING_SIZE)
