"""What the pipeline finds in a photo: its faces, each with a box, the detector's confidence, the
aligned crop and (once encoded) the encoding. Plain data, no model: the rules above read it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True, eq=False)
class AlignedFace:
    """A face in a photo: where it is (x, y, w, h in the upright photo), its aligned crop, its encoding."""

    box: tuple[float, float, float, float]
    confidence: float | None  # None when detection is off and the whole photo was taken as the face
    crop: Image.Image
    encoding: np.ndarray | None = None

    @property
    def area(self) -> float:
        return max(self.box[2], 0.0) * max(self.box[3], 0.0)


@dataclass(frozen=True)
class PhotoFaces:
    """Every face found in one photo (most confident first) and the upright photo's size."""

    width: int
    height: int
    faces: list[AlignedFace]
