"""Cut a face out of a photo as a size x size RGB image for the encoder.

Coordinates follow MTCNN and the ArcFace template: pixel indices, so the centre of the top-left
pixel is (0, 0). Pillow's ``transform`` works in continuous coordinates where that centre is
(0.5, 0.5); the conversion happens in one place, ``_pillow_inverse_coeffs``.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

DEFAULT_SIZE = 160
DEFAULT_MARGIN = 0.2

# The common 5-point reference for 112x112 ArcFace-style crops: left eye, right eye, nose,
# mouth left, mouth right (left = image left, as in MTCNN's output).
_ARCFACE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)

# Pillow's bilinear transform samples without anti-aliasing; below this output/input scale the
# source region is box-reduced first so big faces in full-resolution photos do not alias.
_MIN_SCALE_WITHOUT_PREFILTER = 0.5


def face_template(size: int = DEFAULT_SIZE, margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """Where the five landmarks should land in a size x size aligned face, shape (5, 2).

    The ArcFace points, normalised to the unit square, are scaled to a square of
    ``size / (1 + 2 * margin)`` pixels centred in the output: ``margin`` is the extra context
    on each side as a share of that face square.
    """
    face_side = size / (1.0 + 2.0 * margin)
    offset = (size - face_side) / 2.0
    return offset + (_ARCFACE_112 / 112.0) * face_side


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares rotation + uniform scale + translation taking ``src`` points to ``dst``.

    Umeyama (1991). Returns a 2x3 matrix ``M`` with ``dst ~ M[:, :2] @ p + M[:, 2]``.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    src_var = (src_c**2).sum() / len(src)
    if src_var <= 1e-12:
        raise ValueError("landmarks are degenerate (all at one point)")
    cov = dst_c.T @ src_c / len(src)
    u, sigma, vt = np.linalg.svd(cov)
    # Force a proper rotation: a mirror image would fit better but is not a face pose.
    d = np.array([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rotation = u @ np.diag(d) @ vt
    scale = (sigma * d).sum() / src_var
    translation = dst_mean - scale * rotation @ src_mean
    return np.hstack([scale * rotation, translation[:, None]])


def alignment_matrix(
    landmarks: np.ndarray, size: int = DEFAULT_SIZE, margin: float = DEFAULT_MARGIN
) -> np.ndarray:
    """The 2x3 similarity taking photo coordinates to aligned-face coordinates."""
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.shape != (5, 2):
        raise ValueError(f"expected landmarks of shape (5, 2), got {landmarks.shape}")
    return similarity_transform(landmarks, face_template(size, margin))


def apply_matrix(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map (n, 2) points through a 2x3 affine matrix."""
    points = np.asarray(points, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def align_face(
    image: Image.Image,
    landmarks: np.ndarray,
    size: int = DEFAULT_SIZE,
    margin: float = DEFAULT_MARGIN,
) -> Image.Image:
    """Warp the face with these five landmarks onto the template: a size x size RGB image."""
    matrix = alignment_matrix(landmarks, size, margin)
    source, matrix = _prefilter(_as_rgb(image), matrix, size)
    return source.transform(
        (size, size),
        Image.Transform.AFFINE,
        _pillow_inverse_coeffs(matrix),
        resample=Image.Resampling.BILINEAR,
    )


def crop_box(
    image: Image.Image,
    box: tuple[float, float, float, float],
    size: int = DEFAULT_SIZE,
    margin: float = DEFAULT_MARGIN,
) -> Image.Image:
    """Square crop around an (x, y, w, h) box plus ``margin`` per side, resized to size x size.

    The fallback when there are no landmarks; parts outside the photo come out black.
    """
    x, y, w, h = (float(v) for v in box)
    side = max(w, h) * (1.0 + 2.0 * margin)
    if side <= 0:
        raise ValueError(f"box has no area: {box}")
    centre_x, centre_y = x + w / 2.0, y + h / 2.0
    left, top = round(centre_x - side / 2.0), round(centre_y - side / 2.0)
    side_px = max(1, round(side))
    square = _as_rgb(image).crop((left, top, left + side_px, top + side_px))
    return square.resize((size, size), Image.Resampling.BILINEAR)


def whole_image_face(
    image: Image.Image,
    size: int = DEFAULT_SIZE,
    resample: Image.Resampling = Image.Resampling.BILINEAR,
) -> Image.Image:
    """Treat the whole photo as the face (detection off, photo already a face crop).

    The Happy House reference resized with ``Image.Resampling.NEAREST``; pass that to match it.
    """
    return _as_rgb(image).resize((size, size), resample)


def _prefilter(
    image: Image.Image, matrix: np.ndarray, size: int
) -> tuple[Image.Image, np.ndarray]:
    """Box-reduce the source region when the warp shrinks it a lot; adjust the matrix to match."""
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    factor = int(1.0 / scale) if scale < _MIN_SCALE_WITHOUT_PREFILTER else 1
    if factor < 2:
        return image, matrix
    # Only the part of the photo that lands in the output needs reducing.
    inverse = _invert(matrix)
    corners = apply_matrix(inverse, np.array([[-1, -1], [size, -1], [-1, size], [size, size]]))
    left, top = np.floor(corners.min(axis=0)).astype(int) - factor
    right, bottom = np.ceil(corners.max(axis=0)).astype(int) + factor
    left, top = max(left, 0), max(top, 0)
    right, bottom = min(right, image.width), min(bottom, image.height)
    if right <= left or bottom <= top:
        return image, matrix  # the face is entirely off the photo; nothing worth reducing
    region = image.reduce(factor, box=(int(left), int(top), int(right), int(bottom)))
    # Index p in the photo is index (p - origin + 0.5) / factor - 0.5 in the reduced region.
    to_region = np.array(
        [
            [1.0 / factor, 0.0, (0.5 - left) / factor - 0.5],
            [0.0, 1.0 / factor, (0.5 - top) / factor - 0.5],
        ]
    )
    return region, _compose(matrix, _invert(to_region))


def _as_rgb(image: Image.Image) -> Image.Image:
    """The image in RGB, without convert()'s full copy when it already is (12 Mpx: ~40 ms)."""
    return image if image.mode == "RGB" else image.convert("RGB")


def _pillow_inverse_coeffs(matrix: np.ndarray) -> tuple[float, ...]:
    """Pillow AFFINE data for a photo->output index-coordinate matrix.

    Pillow asks, for each output point in continuous coordinates, where to sample the input;
    continuous = index + 0.5 on both sides.
    """
    inverse = _invert(matrix)
    shift = np.array([[1.0, 0.0, -0.5], [0.0, 1.0, -0.5]])  # continuous -> index
    unshift = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5]])  # index -> continuous
    coeffs = _compose(unshift, _compose(inverse, shift))
    return tuple(float(v) for v in coeffs.ravel())


def _invert(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine matrix."""
    linear_inv = np.linalg.inv(matrix[:, :2])
    return np.hstack([linear_inv, (-linear_inv @ matrix[:, 2])[:, None]])


def _compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """2x3 matrix of ``outer(inner(p))``."""
    linear = outer[:, :2] @ inner[:, :2]
    return np.hstack([linear, (outer[:, :2] @ inner[:, 2] + outer[:, 2])[:, None]])
