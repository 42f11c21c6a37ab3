"""FaceNet in int8: quantised after training by NNCF, its activation ranges calibrated on real faces.

Made once, at conversion, from OpenVINO's fp32 copy, and cached beside it. The calibration faces are the
5-celebrity *train* photos that set-up fetches with the weights (each one's most confident face and its
mirror, found with fixed detection settings: ``pipeline.int8_calibration``), so the quantised network
depends on the weights, the OpenVINO and NNCF versions and the input normalisation only, and hosts that
share these make it alike (up to their CPUs' rounding). None of the photos is in LFW, on which its
accuracy is measured (bench/precision_accuracy.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from service.errors import ModelError
from service.pipeline.decode import is_photo
from service.pipeline.encoder import normalize_pixels
from service.pipeline.model_id import NNCF_VERSION
from service.pipeline.quiet_imports import import_nncf

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class Calibration:
    """How an int8 copy is made. ``tag`` names the copy in the cache by what its ranges depend on (the
    input normalisation); ``faces()`` gives the network's inputs, (N, 160, 160, 3) float32."""

    tag: str
    faces: Callable[[], np.ndarray]


def calibration_faces(photos: Path, locate: Callable, normalization: str) -> np.ndarray:
    """The network's input for each photo's most confident face and its mirror, (N, 160, 160, 3) float32.

    ``locate`` finds a photo's aligned faces (``Pipeline.locate``)."""
    paths = sorted(p for p in Path(photos).glob("*/*") if is_photo(p))
    if not paths:
        raise ModelError(f"int8 calibration photos not found under {photos}: run `make models` to fetch them")
    crops = [np.asarray(face.crop) for path in paths for face in locate(path).faces[:1]]
    if not crops or len(crops) < len(paths) // 2:  # a detector finding no face in these photos is broken
        raise ModelError(f"int8 calibration: faces found in only {len(crops)} of {len(paths)} photos under {photos}")
    # Mirrors too: with model.flip every face is also encoded mirrored.
    return normalize_pixels(np.stack(crops + [crop[:, ::-1] for crop in crops]), normalization).astype(np.float32)


def quantize(model, calibration: Calibration):
    """``model`` (an fp32 ``openvino.Model``) with int8 weights and activations, ranges from the
    calibration's faces. Any failure is a ModelError naming int8, not retried as a damaged cache."""
    nncf = require_nncf()  # before the calibration's detection pass, which takes seconds
    try:
        faces = calibration.faces()
        samples = [faces[i:i + 1] for i in range(len(faces))]  # one at a time, as requests mostly run
        quantized = nncf.quantize(model, nncf.Dataset(samples), subset_size=len(samples))
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"int8 quantisation failed: {exc}") from exc
    log.info("quantised FaceNet to int8 with NNCF %s on %d calibration faces", nncf.__version__, len(samples))
    return quantized


def require_nncf():
    """NNCF at the version the model id names (without its usage reporting: ``quiet_imports``)."""
    try:
        nncf = import_nncf()
    except ImportError:
        raise ModelError(f"model.precision int8 needs NNCF {NNCF_VERSION} to make the quantised network "
                         f"once: .venv/bin/pip install nncf=={NNCF_VERSION} (`make setup` installs it)") from None
    if nncf.__version__ != NNCF_VERSION:
        # Another version may quantise differently, and the model id would not say so.
        raise ModelError(f"model.precision int8 is made with NNCF {NNCF_VERSION}; {nncf.__version__} is installed")
    return nncf
