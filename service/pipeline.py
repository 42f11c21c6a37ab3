"""Photo in, faces out: decode -> detect -> align -> encode.

The one place that strings the stages together, so every front end (CLI, HTTP, batch jobs) sees the
same faces for the same photo.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
from PIL import Image

from service.align import align_face, whole_image_face
from service.config import Config
from service.detect import DetectedFace, FaceDetector, scale_face
from service.encoder import Encoder
from service.errors import MultipleFaces, NoFace
from service.facenet import INPUT_SIZE, load_facenet
from service.imageio import Source, describe_source, load_for_detection, load_image


@dataclass(frozen=True, eq=False)
class Face:
    """A face in a photo: where it is (x, y, w, h in the upright photo), its aligned crop, its encoding."""

    box: tuple[float, float, float, float]
    confidence: float | None  # None when detection is off and the whole photo was taken as the face
    crop: Image.Image
    encoding: np.ndarray | None = None


class Pipeline:
    """Finds and encodes faces. Holds the loaded networks, so build one and reuse it."""

    def __init__(self, encoder: Encoder, detector: FaceDetector | None, config: Config):
        self.encoder = encoder
        self.detector = detector
        self.config = config

    @property
    def model_id(self) -> str:
        return self.encoder.model_id

    def locate(self, source: Source) -> list[Face]:
        """Every face in the photo with its aligned crop, most confident first (not yet encoded)."""
        if self.detector is None:
            image = load_image(source, max_pixels=self.config.max_pixels)
            return [Face((0.0, 0.0, float(image.width), float(image.height)), None,
                         whole_image_face(image, INPUT_SIZE))]
        det = self.config.detection
        photo = load_for_detection(source, max_side=det.max_side, max_pixels=self.config.max_pixels)
        found = self.detector.detect(photo.small, min_face=det.min_face, min_confidence=det.min_confidence)
        return [self._aligned(photo.full, scale_face(face, photo.scale)) for face in found]

    def _aligned(self, image: Image.Image, face: DetectedFace) -> Face:
        crop = align_face(image, face.landmarks, size=INPUT_SIZE, margin=self.config.detection.margin)
        return Face(face.box, face.confidence, crop)

    def encode(self, faces: Sequence[Face]) -> list[Face]:
        """The same faces with their encodings, computed in batches."""
        encodings = self.encoder.encode([face.crop for face in faces])
        return [replace(face, encoding=vector) for face, vector in zip(faces, encodings)]

    def faces(self, source: Source) -> list[Face]:
        """Every face in the photo, encoded."""
        return self.encode(self.locate(source))

    def single_face(self, source: Source) -> Face:
        """The one face in a photo; enrollment and verification refuse ambiguous photos."""
        return self.encode([only_face(self.locate(source), describe_source(source))])[0]


def only_face(faces: Sequence[Face], name: str) -> Face:
    """The single face of a photo, or NoFace / MultipleFaces naming the photo."""
    if not faces:
        raise NoFace(f"no face found in {name}")
    if len(faces) > 1:
        raise MultipleFaces(f"{len(faces)} faces found in {name}; use a photo with exactly one face")
    return faces[0]


def build_pipeline(config: Config) -> Pipeline:
    """Load the networks the configuration asks for (seconds: do it once per process)."""
    facenet = load_facenet(config.model.weights, config.model.cache_dir, config.expected_sha256)
    encoder = Encoder(facenet, config.model.normalization, config.model.batch_size,
                      config.model.flip)
    return Pipeline(encoder, FaceDetector() if config.detect else None, config)
