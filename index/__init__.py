"""The vector index: face encodings under integer ids, searched exactly by L2 distance (FAISS).

Knows vectors and ids only; nothing here imports from ``service``.
"""

from index.faces import DEFAULT_DIM, DuplicateIdError, FaceIndex, IndexInputError
from index.saved import (
    FORMAT_VERSION,
    INDEX_FILE,
    MANIFEST_FILE,
    IndexCorrupt,
    IndexLoadError,
    IndexMissing,
    IndexStale,
    Manifest,
    read_manifest,
)

__all__ = [
    "DEFAULT_DIM",
    "FORMAT_VERSION",
    "INDEX_FILE",
    "MANIFEST_FILE",
    "DuplicateIdError",
    "FaceIndex",
    "IndexCorrupt",
    "IndexInputError",
    "IndexLoadError",
    "IndexMissing",
    "IndexStale",
    "Manifest",
    "read_manifest",
]
