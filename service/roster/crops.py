"""The aligned 160x160 face crops each enrollment keeps, so a new model can re-encode every face.

They are stored in the database (``face_crops``), in the transaction that stores their face, as PNG:
lossless, so re-encoding a kept crop gives back the encoding the original crop gave.
"""

from __future__ import annotations

import io

from PIL import Image


def crop_to_png(crop: Image.Image) -> bytes:
    buffer = io.BytesIO()
    crop.convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def crop_to_jpeg(crop: Image.Image, quality: int = 90) -> bytes:
    """For showing, not for re-encoding (JPEG loses a little)."""
    buffer = io.BytesIO()
    crop.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def crop_from_png(data: bytes | None) -> Image.Image | None:
    """The kept crop as RGB, or None when there is none (or it cannot be read)."""
    if not data:
        return None
    try:
        with Image.open(io.BytesIO(data)) as crop:
            return crop.convert("RGB")
    except (OSError, ValueError):
        return None
