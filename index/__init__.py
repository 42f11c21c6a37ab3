"""The vector index: face encodings under integer ids, searched by L2 distance (FAISS): exactly (flat)
or approximately with exact distances (hnsw).

Knows vectors and ids only; nothing here imports from ``service``.
"""

from index.faces import DEFAULT_DIM, DuplicateIdError, FaceIndex, IndexInputError
from index.kinds import COMPACT_SHARE, KINDS, IndexSpec, IndexSpecError
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
    "COMPACT_SHARE",
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
    "IndexSpec",
    "IndexSpecError",
    "IndexStale",
    "KINDS",
    "Manifest",
    "read_manifest",
]
