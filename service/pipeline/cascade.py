"""MTCNN's three-stage cascade in NumPy: image pyramid, proposals, suppression, refinement.

The arithmetic follows the ``mtcnn`` 1.0.0 package step for step, down to the float32 or float64 of
each intermediate, so that the same networks find the same faces at the same coordinates
(``tests/test_detect_cascade.py`` compares the two live): the pyramid levels and the patches are
bit for bit those of the TensorFlow ops the package calls. What differs is the cost: the package
pays a framework call for every level and every step on it; here PNet sees all levels at once
(``Networks.pnet``), the resizes are sparse products and the crops vectorised gathers without
TensorFlow, and NMS never builds a full N x N matrix.

The networks are plain callables (``Networks``), so this module imports neither TensorFlow nor
OpenVINO.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import numpy as np

SCALE_FACTOR = 0.709  # MTCNN's pyramid step
PNET_SIZE, RNET_SIZE, ONET_SIZE = 12, 24, 48
PNET_THRESHOLD, RNET_THRESHOLD = 0.6, 0.7
# IoU above which a box is dropped for a better one: within a pyramid level, across levels, after
# RNet, and after ONet (where the overlap is measured against the smaller box).
NMS_LEVEL, NMS_PYRAMID, NMS_RNET, NMS_ONET = 0.5, 0.7, 0.7, 0.7
# Columns of a box row: x1, y1, x2, y2, score; after ONet the 5 landmark x then the 5 landmark y follow.
SCORE = 4
_NMS_BLOCK = 512  # columns per block of the pairwise overlap test: bounds its memory to N x 512


@dataclass(frozen=True)
class Networks:
    """The three networks as functions of float32 NHWC batches in [-1, 1].

    pnet: the pyramid's levels, each (H, W, 3) -> one (H', W', 6) each: box regression (4), then
    non-face and face probability, for the 12-pixel windows at stride 2 that lie in the level
    (H' = ceil((H - 2) / 2) - 4, W' likewise).
    rnet: (N, 24, 24, 3) -> (N, 6): box regression (4), then the two probabilities.
    onet: (N, 48, 48, 3) -> (N, 16): box regression (4), landmarks (5 x, 5 y), the two probabilities.
    """

    pnet: Callable[[list[np.ndarray]], list[np.ndarray]]
    rnet: Callable[[np.ndarray], np.ndarray]
    onet: Callable[[np.ndarray], np.ndarray]


def normalize(pixels: np.ndarray) -> np.ndarray:
    """uint8 RGB (H, W, 3) -> float32 in [-1, 1), as the networks were trained."""
    return (pixels.astype(np.float32) - np.float32(127.5)) / np.float32(128.0)


def pyramid_scales(width: int, height: int, min_face: float) -> np.ndarray:
    """The scales of the image pyramid: the first maps a ``min_face`` face onto PNet's 12 pixels.

    The level count depends on the shorter side only (the package's formula, kept so that both
    search the same levels); for ``min_face`` up to 20 the last level keeps 12 pixels or more.
    """
    shorter = min(width, height)
    count = round(np.log(shorter / PNET_SIZE) / -np.log(SCALE_FACTOR) - 1)
    return (PNET_SIZE / min_face) * SCALE_FACTOR ** np.arange(max(count, 0))


def level_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """Pixel size of a pyramid level: truncated, as TensorFlow converts the package's float size."""
    return int(height * scale), int(width * scale)


@functools.lru_cache(maxsize=512)  # photos come in few sizes; each matrix is read-only once made
def _area_matrix(in_size: int, out_size: int):
    """The area (box-average) resize along one axis as a sparse (out x in) matrix of covered lengths.

    Output cell j covers [j * r, (j + 1) * r) of the input, r = in/out, and each input cell it
    touches weighs the length covered. Weights are computed in float32 as TensorFlow's ResizeArea
    computes them, and each row lists its cells left to right, the order in which that kernel adds
    them, so that the sparse product below reproduces its sums bit for bit.
    """
    from scipy.sparse import csr_matrix

    r = np.float32(in_size) / np.float32(out_size)
    j = np.arange(out_size, dtype=np.float32)
    lo, hi = j * r, (j + np.float32(1)) * r
    start = np.floor(lo).astype(np.int64)
    taps = np.ceil(hi).astype(np.int64) - start
    width = int(taps.max())
    index = start[:, None] + np.arange(width)[None, :]
    cell = index.astype(np.float32)
    weight = np.where(cell < lo[:, None],
                      np.where(cell + 1 > hi[:, None], r, cell + 1 - lo[:, None]),
                      np.where(cell + 1 > hi[:, None], hi[:, None] - cell, np.float32(1))).astype(np.float32)
    used = np.arange(width)[None, :] < taps[:, None]
    pointers = np.concatenate([[0], np.cumsum(taps)])
    return csr_matrix((weight[used], np.clip(index[used], 0, in_size - 1), pointers), shape=(out_size, in_size))


class Pyramid:
    """Area-resized copies of one image, each equal to ``tf.image.resize(..., method="area")``.

    TensorFlow's kernel sums, for every output pixel, its covered source pixels along the row, then
    those row sums down the column. Here each axis is a sparse matrix product (SciPy adds each row's
    terms in order, from zero, as the kernel does), one C loop over the image per level instead of
    a framework call, and no TensorFlow.
    """

    def __init__(self, image: np.ndarray, pixels: np.ndarray):
        """``image``: the uint8 RGB photo; ``pixels``: the same normalised."""
        self.height, self.width = image.shape[:2]
        # Columns first, so that the horizontal pass reads whole contiguous rows: transposed as
        # 3-byte pixels (a quarter of the float copy's traffic), then normalised.
        columns = _as_cells(np.ascontiguousarray(image)).T
        self._columns = normalize(np.ascontiguousarray(columns).view(np.uint8)).reshape(self.width, -1)
        self._pixels = pixels

    def level(self, height: int, width: int) -> np.ndarray:
        if (height, width) == (self.height, self.width):
            return self._pixels
        across = _area_matrix(self.width, width) @ self._columns  # (width, H * 3): the row sums
        # Back to rows first for the vertical pass, moving whole 12-byte pixels.
        across = np.ascontiguousarray(_as_cells(across.reshape(width, self.height, 3)).T).view(np.float32)
        out = (_area_matrix(self.height, height) @ across.reshape(self.height, -1)).reshape(height, width, 3)
        row_scale = np.float32(self.height) / np.float32(height)
        col_scale = np.float32(self.width) / np.float32(width)
        out *= np.float32(1.0 / float(row_scale * col_scale))
        return out


def _as_cells(array: np.ndarray) -> np.ndarray:
    """A C-contiguous (A, B, 3) array seen as (A, B) single items, so that a transpose moves pixels."""
    return array.view(np.dtype((np.void, 3 * array.itemsize))).reshape(array.shape[:2])


def proposals(level_out: np.ndarray, scale: float) -> np.ndarray:
    """PNet's windows scoring above its threshold, as boxes in the image, best first.

    Each output cell is a 12-pixel window at stride 2; the regression moves its corners by
    multiples of 11 (the package's window size minus one) before the level's scale is undone.
    """
    ys, xs = np.nonzero(level_out[..., 5] > PNET_THRESHOLD)
    reg = level_out[ys, xs, :4].astype(np.float64)
    score = level_out[ys, xs, 5]
    boxes = np.empty((len(ys), 5))
    boxes[:, 0] = (2 * xs + 1) + reg[:, 0] * 11
    boxes[:, 1] = (2 * ys + 1) + reg[:, 1] * 11
    boxes[:, 2] = (2 * xs + 12) + reg[:, 2] * 11
    boxes[:, 3] = (2 * ys + 12) + reg[:, 3] * 11
    boxes[:, :4] /= scale
    boxes[:, SCORE] = score
    return best_first(boxes)


def suppress(boxes: np.ndarray, threshold: float, by_min: bool = False) -> np.ndarray:
    """The rows that overlap no earlier row by more than ``threshold`` (rows sorted best first).

    As in the package, an earlier row suppresses a later one even when it was itself suppressed;
    overlap is intersection over union, or over the smaller area with ``by_min``.
    """
    n = len(boxes)
    if n < 2:
        return boxes
    x1, y1, x2, y2 = (boxes[:, i] for i in range(4))
    area = (x2 - x1) * (y2 - y1)
    keep = np.ones(n, dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        for start in range(1, n, _NMS_BLOCK):
            stop = min(start + _NMS_BLOCK, n)
            cols = slice(start, stop)
            inter = (np.maximum(0, np.minimum(x2[:stop, None], x2[None, cols]) - np.maximum(x1[:stop, None], x1[None, cols]))
                     * np.maximum(0, np.minimum(y2[:stop, None], y2[None, cols]) - np.maximum(y1[:stop, None], y1[None, cols])))
            if by_min:
                overlap = inter / np.minimum(area[:stop, None], area[None, cols])
            else:
                overlap = inter / (area[:stop, None] + area[None, cols] - inter)
            earlier = np.arange(stop)[:, None] < np.arange(start, stop)[None, :]
            keep[cols] = ~((overlap > threshold) & earlier).any(axis=0)
    return boxes[keep]


def best_first(boxes: np.ndarray) -> np.ndarray:
    # A default argsort of the float64 scores, reversed, not a stable descending sort: equal scores
    # (saturated 1.0s are common) then come in the package's order, and so does what NMS keeps.
    return boxes[np.argsort(boxes[:, SCORE])[::-1]]


def squared(boxes: np.ndarray) -> np.ndarray:
    """Each box grown to a square about its centre, the side its longer side."""
    out = boxes.copy()
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def crop_patches(image: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Bilinear ``size`` x ``size`` samples of each box, zero outside the image: equal to
    ``tf.image.crop_and_resize`` on the boxes divided by the image size, as the package calls it."""
    h, w = image.shape[:2]
    f32 = np.float32
    ny1, nx1 = (boxes[:, 1] / h).astype(f32), (boxes[:, 0] / w).astype(f32)
    ny2, nx2 = (boxes[:, 3] / h).astype(f32), (boxes[:, 2] / w).astype(f32)
    steps = np.arange(size, dtype=f32)
    in_y = (ny1 * f32(h - 1))[:, None] + steps[None, :] * ((ny2 - ny1) * f32(h - 1) / f32(size - 1))[:, None]
    in_x = (nx1 * f32(w - 1))[:, None] + steps[None, :] * ((nx2 - nx1) * f32(w - 1) / f32(size - 1))[:, None]
    top, left = np.floor(in_y), np.floor(in_x)
    dy, dx = (in_y - top)[:, :, None, None], (in_x - left)[:, None, :, None]
    rows_t = (np.clip(top, 0, h - 1).astype(np.intp) * w)[:, :, None]
    rows_b = (np.clip(np.ceil(in_y), 0, h - 1).astype(np.intp) * w)[:, :, None]
    col_l = np.clip(left, 0, w - 1).astype(np.intp)[:, None, :]
    col_r = np.clip(np.ceil(in_x), 0, w - 1).astype(np.intp)[:, None, :]
    pixels = image.reshape(-1, 3)
    shape = (len(boxes), size, size, 3)
    tl, tr = (pixels.take((rows_t + c).ravel(), axis=0).reshape(shape) for c in (col_l, col_r))
    bl, br = (pixels.take((rows_b + c).ravel(), axis=0).reshape(shape) for c in (col_l, col_r))
    # In place, in the kernel's order: top = tl + (tr - tl) dx, bottom likewise, top + (bottom - top) dy.
    tr -= tl
    tr *= dx
    tl += tr
    br -= bl
    br *= dx
    bl += br
    bl -= tl
    bl *= dy
    tl += bl
    inside = ((in_y >= 0) & (in_y <= h - 1))[:, :, None] & ((in_x >= 0) & (in_x <= w - 1))[:, None, :]
    tl[~inside] = 0
    return tl


def refine(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Move box corners by the network's offsets, in units of the box's size (+1, as the package).

    In float32: the package adds a TensorFlow tensor to its NumPy boxes, and the tensor's side does
    the arithmetic, rounding both the product and the moved corners to float32."""
    out = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    sizes = np.stack([w, h, w, h], axis=1).astype(np.float32)
    out[:, :4] = boxes[:, :4].astype(np.float32) + offsets.astype(np.float32) * sizes
    return out


def detect(image: np.ndarray, nets: Networks, min_face: float, onet_threshold: float,
           timer: Callable[[str], None] | None = None) -> np.ndarray:
    """Faces in a uint8 RGB image: rows of x1, y1, x2, y2, score, 5 landmark x, 5 landmark y.

    ``timer``, when given, is called with a step's name as each step ends (for the bench).
    """
    mark = timer or (lambda step: None)
    h, w = image.shape[:2]
    pixels = normalize(image)
    mark("normalize")
    pyramid, levels = Pyramid(image, pixels), []
    # A level under PNet's 12 pixels holds no window; the package's pyramid has none for min_face up
    # to 20 (FaceDetector never asks for more) and fails on them above.
    scales = [s for s in pyramid_scales(w, h, min_face) if min(level_size(h, w, s)) >= PNET_SIZE]
    for scale in scales:
        levels.append(pyramid.level(*level_size(h, w, scale)))
        mark("pyramid resize")
    outs = nets.pnet(levels)
    mark("PNet")
    found = []
    for out, scale in zip(outs, scales):
        candidates = proposals(out, scale)
        mark("proposals")
        found.append(suppress(candidates, NMS_LEVEL))
        mark("NMS")
    boxes = np.concatenate(found) if found else np.empty((0, 5))
    boxes = squared(suppress(best_first(boxes), NMS_PYRAMID))
    mark("NMS")
    if len(boxes):
        patches = crop_patches(pixels, boxes, RNET_SIZE)
        mark("crop")
        out = nets.rnet(patches)
        mark("RNet")
        boxes = refine(_with_score(boxes, out[:, 5]), out[:, :4])
        boxes = squared(suppress(best_first(boxes[boxes[:, SCORE] > RNET_THRESHOLD]), NMS_RNET))
        mark("NMS")
    if not len(boxes):
        return np.empty((0, 15))
    patches = crop_patches(pixels, boxes, ONET_SIZE)
    mark("crop")
    out = nets.onet(patches)
    mark("ONet")
    w1 = boxes[:, 2:3] - boxes[:, 0:1] + 1
    h1 = boxes[:, 3:4] - boxes[:, 1:2] + 1
    # float32, as the package stores landmarks in the network's output array
    xs = (w1 * out[:, 4:9] + boxes[:, 0:1] - 1).astype(np.float32)
    ys = (h1 * out[:, 9:14] + boxes[:, 1:2] - 1).astype(np.float32)
    faces = np.concatenate([refine(_with_score(boxes, out[:, 15]), out[:, :4]), xs, ys], axis=1)
    faces = suppress(best_first(faces[faces[:, SCORE] > onet_threshold]), NMS_ONET, by_min=True)
    # Boxes are clipped to the image (landmarks are not), as the package does by default.
    faces[:, [0, 2]] = np.clip(faces[:, [0, 2]], 0, w - 1)
    faces[:, [1, 3]] = np.clip(faces[:, [1, 3]], 0, h - 1)
    mark("NMS")
    return faces


def _with_score(boxes: np.ndarray, score: np.ndarray) -> np.ndarray:
    out = boxes.copy()
    out[:, SCORE] = score
    return out
