"""Find faces and their five landmarks with MTCNN."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

DEFAULT_MIN_FACE = 20
DEFAULT_MIN_CONFIDENCE = 0.9

# Row order of DetectedFace.landmarks.
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")

# MTCNN's own last-stage (ONet) threshold; we only lower it when asked for weaker faces.
_MTCNN_ONET_THRESHOLD = 0.8
# MTCNN's smallest pyramid level is 12 px: a side shorter than that cannot hold a face and
# makes mtcnn 1.0.0 build an empty image pyramid.
_MTCNN_MIN_SIDE = 12
# mtcnn 1.0.0 sizes its pyramid as if min_face_size were 20: above that (about 21 and up) the
# last levels shrink below PNet's 12 px input, TensorFlow raises, and detect_faces swallows the
# error and reports no faces at all. Both detectors below search the pyramid of at most this size
# and filter by size afterwards: the package's levels, so that both search the same ones.
_MTCNN_LARGEST_SAFE_MIN_FACE = 20


@dataclass(frozen=True, eq=False)
class DetectedFace:
    """One face found in an image, in that image's pixel coordinates."""

    box: tuple[float, float, float, float]  # x, y, width, height
    confidence: float
    landmarks: np.ndarray  # (5, 2) float32, rows in LANDMARK_NAMES order, columns x, y

    def __post_init__(self) -> None:
        landmarks = np.array(self.landmarks, dtype=np.float32).reshape(5, 2)
        landmarks.setflags(write=False)  # frozen means frozen, arrays included
        object.__setattr__(self, "landmarks", landmarks)
        object.__setattr__(self, "box", tuple(float(v) for v in self.box))
        object.__setattr__(self, "confidence", float(self.confidence))


class FaceDetector:
    """MTCNN face and landmark detector; building one compiles three small networks, so reuse it.

    The cascade is our own (``cascade.py``), on the ``mtcnn`` package's pretrained weights run by
    OpenVINO (``mtcnn_nets.py``); it finds what the package's own ``detect_faces`` finds
    (``MtcnnPackageDetector``, kept as the reference) in a fraction of the time, without TensorFlow.
    May be called from several threads at once.
    """

    def __init__(self, threads: int = 0):
        """``threads``: CPU threads for one network call (0: every core)."""
        # Imported here so that importing this module stays cheap for code that only reads faces.
        from service.pipeline.mtcnn_nets import load_networks

        self._nets = load_networks(threads)

    def detect(
        self,
        image: Image.Image,
        min_face: int = DEFAULT_MIN_FACE,
        min_confidence: float = DEFAULT_MIN_CONFIDENCE,
        timer=None,
    ) -> list[DetectedFace]:
        """Faces in ``image`` at least ``min_face`` pixels tall or wide and scoring at least
        ``min_confidence``, most confident first. ``timer(step)`` is told as each step ends (benches)."""
        from service.pipeline.cascade import detect

        if min(image.size) < _MTCNN_MIN_SIDE:
            return []
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        rows = detect(np.asarray(rgb), self._nets, min(min_face, _MTCNN_LARGEST_SAFE_MIN_FACE),
                      min(_MTCNN_ONET_THRESHOLD, min_confidence), timer)
        return _kept([_face_from_cascade(row) for row in rows], min_face, min_confidence)


class MtcnnPackageDetector:
    """The ``mtcnn`` package's own detector (TensorFlow), as this project ran it before: the reference
    that ``FaceDetector`` is tested and benched against. Same interface."""

    def __init__(self, device: str = "CPU:0"):
        from mtcnn import MTCNN

        self._mtcnn = MTCNN(stages="face_and_landmarks_detection", device=device)
        _compile_stages(self._mtcnn)

    def detect(
        self,
        image: Image.Image,
        min_face: int = DEFAULT_MIN_FACE,
        min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    ) -> list[DetectedFace]:
        if min(image.size) < _MTCNN_MIN_SIDE:
            return []
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        pixels = np.asarray(rgb, dtype=np.float32)
        rows = self._mtcnn.detect_faces(
            pixels,
            output_type="numpy",  # the JSON form rounds boxes and landmarks to whole pixels
            box_format="xywh",
            min_face_size=min(min_face, _MTCNN_LARGEST_SAFE_MIN_FACE),
            threshold_onet=min(_MTCNN_ONET_THRESHOLD, min_confidence),
        )
        faces = [_face_from_row(row) for row in np.asarray(rows).reshape(-1, 16)]
        return _kept(faces, min_face, min_confidence)


def _kept(faces: list[DetectedFace], min_face: int, min_confidence: float) -> list[DetectedFace]:
    faces = [
        face
        for face in faces
        if face.confidence >= min_confidence and max(face.box[2], face.box[3]) >= min_face
    ]
    return sorted(faces, key=lambda face: face.confidence, reverse=True)


def _compile_stages(mtcnn) -> None:
    """Run MTCNN's three networks as compiled TensorFlow graphs instead of layer by layer.

    mtcnn 1.0.0 calls its Keras models eagerly, where per-layer Python overhead dominates: 0.22 s per
    small photo on 2 cores, 0.04 s compiled, with identical boxes and landmarks (measured on the
    5-celebrity val photos). One signature with free height/width/batch avoids a retrace per scale.
    """
    import tensorflow as tf

    signature = [tf.TensorSpec([None, None, None, 3], tf.float32)]
    for stage in mtcnn.stages:
        if getattr(stage, "_model", None) is not None:  # pinned mtcnn==1.0.0 keeps it there
            stage._model = tf.function(stage.model, input_signature=signature)


def scale_face(face: DetectedFace, factor: float) -> DetectedFace:
    """The same face in an image ``factor`` times larger (e.g. detection copy -> full photo)."""
    return DetectedFace(
        box=tuple(v * factor for v in face.box),
        confidence=face.confidence,
        landmarks=face.landmarks * np.float32(factor),
    )


def _face_from_cascade(row: np.ndarray) -> DetectedFace:
    """One row of ``cascade.detect``: x1, y1, x2, y2, score, the 5 landmark x, the 5 landmark y."""
    x1, y1, x2, y2, score = row[:5]
    return DetectedFace(box=(x1, y1, x2 - x1, y2 - y1), confidence=score,
                        landmarks=np.stack([row[5:10], row[10:15]], axis=1))


def _face_from_row(row: np.ndarray) -> DetectedFace:
    """Parse one row of mtcnn's numpy output.

    Layout (mtcnn 1.0.0): image index, x, y, w, h, confidence, then the five landmark x values
    followed by the five y values, each in LANDMARK_NAMES order.
    """
    xs, ys = row[6:11], row[11:16]
    return DetectedFace(
        box=tuple(row[1:5]),
        confidence=row[5],
        landmarks=np.stack([xs, ys], axis=1),
    )
