"""Photo in, faces out: decode -> detect -> align -> encode.

The one place that strings the stages together, so every front end (CLI, HTTP, batch jobs) sees the
same faces for the same photo. Which of several faces counts is decided above, in the application.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Sequence

from PIL import Image

from service.config import Config, DetectionConfig
from service.pipeline.align import align_face, whole_image_face
from service.pipeline.decode import Source, load_for_detection, load_image
from service.pipeline.detect import DetectedFace, FaceDetector, scale_face
from service.pipeline.encoder import Encoder
from service.pipeline.faces import AlignedFace, PhotoFaces
from service.pipeline.head import configured_head
from service.pipeline.batching import BatchingEmbed
from service.pipeline.runtime import INPUT_SIZE, load_facenet

if TYPE_CHECKING:
    from service.pipeline.quantize import Calibration


# config.yaml's shipped detection settings, fixed for int8's calibration whatever a site sets.
CALIBRATION_DETECTION = DetectionConfig(max_side=800, min_face=20, min_confidence=0.8, margin=0.0)


class Pipeline:
    """Finds and encodes faces. Holds the loaded networks, so build one and reuse it."""

    def __init__(self, encoder: Encoder, detector: FaceDetector | None, config: Config):
        self.encoder = encoder
        self.detector = detector
        self.config = config

    @property
    def model_id(self) -> str:
        return self.encoder.model_id

    def without_head(self) -> "Pipeline":
        """The same networks, giving the network's own encodings (no trained head)."""
        return Pipeline(self.encoder.without_head(), self.detector, self.config)

    def locate(self, source: Source) -> PhotoFaces:
        """Every face in the photo with its aligned crop, most confident first (not yet encoded)."""
        if self.detector is None:
            image = load_image(source, max_pixels=self.config.max_pixels)
            whole = AlignedFace((0.0, 0.0, float(image.width), float(image.height)), None,
                                whole_image_face(image, INPUT_SIZE))
            return PhotoFaces(image.width, image.height, [whole])
        det = self.config.detection
        photo = load_for_detection(source, max_side=det.max_side, max_pixels=self.config.max_pixels)
        found = self.detector.detect(photo.small, min_face=det.min_face, min_confidence=det.min_confidence)
        faces = [self._aligned(photo.full, scale_face(face, photo.scale)) for face in found]
        return PhotoFaces(photo.full.width, photo.full.height, faces)

    def _aligned(self, image: Image.Image, face: DetectedFace) -> AlignedFace:
        crop = align_face(image, face.landmarks, size=INPUT_SIZE, margin=self.config.detection.margin)
        return AlignedFace(face.box, face.confidence, crop)

    def encode(self, faces: Sequence[AlignedFace]) -> list[AlignedFace]:
        """The same faces with their encodings, computed in batches."""
        encodings = self.encoder.encode([face.crop for face in faces])
        return [replace(face, encoding=vector) for face, vector in zip(faces, encodings)]

    def warm_up(self) -> None:
        """Run the networks once, so that a server's first request does not pay for their first run
        (0.9 s for FaceNet on this project's machine; MTCNN's first photo in a fresh process, 0.22 s:
        docs/performance.md, "Detection")."""
        import numpy as np

        self.encoder.encode([np.zeros((INPUT_SIZE, INPUT_SIZE, 3), np.uint8)])
        if self.detector is not None:
            noise = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
            self.detector.detect(Image.fromarray(noise))

    def faces(self, source: Source) -> list[AlignedFace]:
        """Every face in the photo, encoded."""
        return self.encode(self.locate(source).faces)


def build_pipeline(config: Config, head=None) -> Pipeline:
    """Load the networks the configuration asks for (seconds: do it once per process)."""
    model = config.model
    detector = FaceDetector() if config.detect else None
    facenet = load_facenet(model.weights, model.cache_dir, config.expected_sha256, model.runtime, model.threads,
                           model.precision, int8_calibration(config, detector) if model.precision == "int8" else None)
    # Server threads encode at the same time: their faces share the network's runs (batching.py).
    facenet = replace(facenet, embed=BatchingEmbed(facenet.embed, max_rows=model.batch_size))
    if head is None and model.head is not None:
        head = configured_head(config)
    encoder = Encoder(facenet, model.normalization, model.batch_size, model.flip, head)
    return Pipeline(encoder, detector, config)


def int8_calibration(config: Config, detector: FaceDetector | None) -> Calibration:
    """How ``model.precision: int8`` is calibrated: on faces found and aligned as served photos are, with
    the shipped detection settings rather than this site's (so hosts make the same network), and by a
    detector even when detection is off (the calibration photos are scenes; the network is only ever
    given faces)."""
    from service.pipeline.quantize import Calibration, calibration_faces

    def faces():
        finder = Pipeline(None, detector or FaceDetector(), replace(config, detection=CALIBRATION_DETECTION))
        return calibration_faces(config.model.celebrity_photos / "train", finder.locate, config.model.normalization)

    return Calibration(config.model.normalization, faces)
