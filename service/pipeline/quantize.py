"""FaceNet in int8: quantised after training by NNCF, its activation ranges calibrated on real faces.

Made once, at conversion, from OpenVINO's fp32 copy, and cached beside it. The calibration faces are the
5-celebrity *train* photos that set-up fetches with the weights (each one's most confident face and its
mirror), so every host that has the weights makes the same quantised network; none of them is in LFW,
on which its accuracy is measured (bench/precision_accuracy.py).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import numpy as np

from service.errors import ModelError
from service.pipeline.encoder import normalize_pixels
from service.pipeline.model_id import NNCF_VERSION
from service.pipeline.quiet_imports import import_nncf

log = logging.getLogger(__name__)

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")


def calibration_faces(photos: Path, locate: Callable, normalization: str) -> np.ndarray:
    """The network's input for each photo's most confident face and its mirror, (N, 160, 160, 3) float32.

    ``locate`` finds a photo's aligned faces (``Pipeline.locate``)."""
    paths = sorted(p for p in Path(photos).glob("*/*") if p.suffix.lower() in PHOTO_SUFFIXES)
    if not paths:
        raise ModelError(f"int8 calibration photos not found under {photos}: run `make models` to fetch them")
    crops = [np.asarray(face.crop) for path in paths for face in locate(path).faces[:1]]
    if len(crops) < len(paths) // 2:  # a detector that finds no face in these photos is broken, not picky
        raise ModelError(f"int8 calibration: faces found in only {len(crops)} of {len(paths)} photos under {photos}")
    # Mirrors too: with model.flip every face is also encoded mirrored.
    return normalize_pixels(np.stack(crops + [crop[:, ::-1] for crop in crops]), normalization).astype(np.float32)


def quantize(model, faces: np.ndarray):
    """``model`` (an fp32 ``openvino.Model``) with int8 weights and activations, ranges from ``faces``."""
    nncf = _nncf()
    samples = [faces[i:i + 1] for i in range(len(faces))]  # one at a time, as requests mostly run
    quantized = nncf.quantize(model, nncf.Dataset(samples), subset_size=len(samples))
    log.info("quantised FaceNet to int8 with NNCF %s on %d calibration faces", nncf.__version__, len(samples))
    return quantized


def _nncf():
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
