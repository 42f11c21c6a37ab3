"""Face crops in, unit-length 128-d encodings out."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image

from service.pipeline.head import Head
from service.pipeline.model_id import encoding_model_id
from service.pipeline.runtime import INPUT_SIZE, FaceNet

NORMALIZATIONS = ("standardize", "divide255")


def normalize_pixels(batch: np.ndarray, method: str) -> np.ndarray:
    """Scale uint8 RGB pixels as the network expects.

    ``standardize`` is FaceNet's own prewhitening: each image to zero mean and unit variance (the std is
    floored at 1/sqrt(pixels) so a flat image does not divide by zero). ``divide255`` maps to [0, 1],
    as the Happy House exercise did.
    """
    batch = batch.astype(np.float32)
    if method == "divide255":
        return batch / 255.0
    if method != "standardize":
        raise ValueError(f"unknown normalization {method!r}; use one of {NORMALIZATIONS}")
    axes = tuple(range(1, batch.ndim))
    mean = batch.mean(axis=axes, keepdims=True)
    floor = np.float32(1.0 / np.sqrt(np.prod(batch.shape[1:])))  # float32 scalar: keeps the batch float32
    std = np.maximum(batch.std(axis=axes, keepdims=True), floor)
    return (batch - mean) / std


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, as float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def as_pixels(face: Image.Image | np.ndarray) -> np.ndarray:
    """A 160x160x3 uint8 array from an aligned crop (PIL image or array)."""
    pixels = np.asarray(face.convert("RGB") if isinstance(face, Image.Image) else face)
    if pixels.shape != (INPUT_SIZE, INPUT_SIZE, 3):
        raise ValueError(f"face crops must be {INPUT_SIZE}x{INPUT_SIZE} RGB, got shape {pixels.shape}")
    return pixels


class Encoder:
    """Runs FaceNet in batches over aligned face crops."""

    def __init__(self, facenet: FaceNet, normalization: str = "standardize", batch_size: int = 32,
                 flip: bool = False, head: Head | None = None):
        """``flip``: encode each crop and its mirror image and average the two (twice the compute).

        A face and its mirror are the same person; averaging cancels part of the network's left/right
        bias. Measured on real photos in README ("Input normalisation and alignment").
        ``head``: a trained head (``facerec train``) applied to the network's encodings.
        """
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"unknown normalization {normalization!r}; use one of {NORMALIZATIONS}")
        self.facenet = facenet
        self.normalization = normalization
        self.batch_size = batch_size
        self.flip = flip
        self.head = head

    @property
    def model_id(self) -> str:
        """Names weights, input handling and head: encodings made differently must not be compared."""
        return encoding_model_id(self.facenet.model_id, self.normalization, self.flip,
                                 self.head.head_id if self.head else None)

    def without_head(self) -> "Encoder":
        """The same network giving its own encodings (what training and the evaluation cache use)."""
        return Encoder(self.facenet, self.normalization, self.batch_size, self.flip)

    def encode(self, faces: Sequence[Image.Image | np.ndarray]) -> np.ndarray:
        """(N, 128) float32 unit vectors, one per crop, in order."""
        encodings = self._encode(faces)
        return self.head.apply(encodings) if self.head is not None and len(encodings) else encodings

    def _encode(self, faces: Sequence[Image.Image | np.ndarray]) -> np.ndarray:
        if len(faces) == 0:
            return np.zeros((0, 128), dtype=np.float32)
        pixels = np.stack([as_pixels(f) for f in faces])
        if not self.flip:
            return l2_normalize(self._run(pixels))
        # Face and mirror go through the network side by side: one call even at batch 1.
        both = np.stack([pixels, pixels[:, :, ::-1]], axis=1).reshape(-1, *pixels.shape[1:])
        pairs = l2_normalize(self._run(both)).reshape(len(pixels), 2, -1)
        return l2_normalize(pairs.sum(axis=1))

    def _run(self, pixels: np.ndarray) -> np.ndarray:
        out = []
        for start in range(0, len(pixels), self.batch_size):
            chunk = normalize_pixels(pixels[start:start + self.batch_size], self.normalization)
            out.append(self.facenet.embed(chunk))
        return np.concatenate(out)
