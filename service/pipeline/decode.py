"""Decode user photos into RGB Pillow images, refusing anything unsafe or unusable.

Every failure a user can cause becomes one of the ``ImageError`` subclasses from
``service.errors``, with a message naming the file when there is one.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from service.errors import (
    EmptyImage,
    ImageError,
    ImageNotFound,
    ImageTooLarge,
    NotAnImage,
    TruncatedImage,
)

Source = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview]

DEFAULT_MAX_PIXELS = 40_000_000
# What a folder walk takes for a photo (by name; the bytes are checked when decoded).
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
DEFAULT_MAX_SIDE = 800

# Transparent pixels are composited onto white: their stored colour is often arbitrary (black or
# leftovers from editing) and would otherwise show up as dark blotches next to the face.
_BACKGROUND = (255, 255, 255)


@dataclass(frozen=True)
class DetectionInput:
    """A photo ready for detection: full-resolution pixels plus a reduced copy to search in."""

    full: Image.Image
    small: Image.Image
    # Multiply coordinates in ``small`` by this to get coordinates in ``full``.
    scale: float


def load_image(source: Source, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode a photo (path or encoded bytes) into an upright RGB image.

    Raises ImageNotFound, EmptyImage, NotAnImage, TruncatedImage or ImageTooLarge.
    """
    name = describe_source(source)
    with _open_lazily(source, name) as image:
        # Image.open only parsed the header, so a decompression bomb is refused here before
        # a single pixel is decoded.
        _check_pixel_count(image.size, max_pixels, name)
        _decode(image, name)
        _apply_exif_orientation(image)
        try:
            return to_rgb(image)
        except ValueError as exc:  # exotic modes such as LAB that Pillow cannot convert alone
            raise NotAnImage(f"{name} uses colour mode {image.mode}, which we cannot read: {exc}") from None


def load_for_detection(
    source: Source,
    max_side: int = DEFAULT_MAX_SIDE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> DetectionInput:
    """Decode a photo and make a copy whose longer side is at most ``max_side`` for detection.

    Both images are upright (EXIF orientation applied) so coordinates map by ``scale`` alone.
    """
    # Measured on a 4032x3024 JPEG (2.8 MB, noisy; 0.6 MB, smooth), 2 cores:
    #   full decode                                  71 ms /  42 ms
    #   full decode + second open in draft mode      122 ms /  63 ms
    #   full decode + reduce() + resize (chosen)      91 ms /  57 ms
    # Draft mode only skips the inverse DCT, not the entropy decoding, so a second decode
    # costs more than box-reducing pixels we already hold. The full pixels are always needed
    # for alignment, hence one decode for every format and no JPEG special case.
    full = load_image(source, max_pixels=max_pixels)
    small, scale = _detection_copy(full, max_side)
    return DetectionInput(full=full, small=small, scale=scale)


def describe_source(source: Source) -> str:
    """Name the photo for error messages: its path, or its size when it came as bytes."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"the uploaded image ({len(source)} bytes)"
    return f"'{os.fspath(source)}'"


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB (greyscale, palette, alpha, 16-bit, CMYK...)."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        # Pillow clips these to 0..255 instead of scaling, which turns most 16-bit photos white.
        image = _wide_greyscale_to_l(image)
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        image.mode in ("P", "L", "RGB") and "transparency" in image.info
    ):
        return _flatten_alpha(image.convert("RGBA"))
    return image.convert("RGB")


@contextlib.contextmanager
def _open_lazily(source: Source, name: str) -> Iterator[Image.Image]:
    """Open the photo without decoding pixels, turning open-time failures into ImageErrors."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise EmptyImage(f"{name} is empty")
        with _identify(io.BytesIO(bytes(source)), name) as image:
            yield image
        return

    path = os.fspath(source)
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        raise ImageNotFound(f"no such file: {name}") from None
    except OSError as exc:
        raise ImageError(f"cannot read {name}: {exc.strerror or exc}") from None
    if os.path.isdir(path):
        raise NotAnImage(f"{name} is a directory, not an image file")
    if size == 0:
        raise EmptyImage(f"{name} is an empty file (0 bytes)")
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        raise ImageNotFound(f"no such file: {name}") from None
    except OSError as exc:
        raise ImageError(f"cannot read {name}: {exc.strerror or exc}") from None
    with handle, _identify(handle, name) as image:
        yield image


@contextlib.contextmanager
def _identify(stream: io.BufferedIOBase, name: str) -> Iterator[Image.Image]:
    """Run Image.open on an open stream, mapping Pillow's refusals to our errors."""
    try:
        # Pillow raises above twice its MAX_IMAGE_PIXELS and only warns below; _check_pixel_count,
        # right after this, refuses those too. (Turning the warning into an error would change
        # process-wide warning filters, which is not thread-safe in a threaded server.)
        image = Image.open(stream)
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"{name} is too large to decode safely: {exc}") from None
    except UnidentifiedImageError:
        raise NotAnImage(f"{name} is not an image in a format we can read") from None
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - Pillow's plugins raise any kind for a damaged file (see _decode)
        # A recognised header that is itself broken: nothing usable, so "not an image".
        raise NotAnImage(f"{name} could not be read as an image: {_reason(exc)}") from None
    # Not closed on exit: close() would discard decoded pixels too, and the caller owns the
    # stream. After load() Pillow keeps no reference to it for single-frame images.
    yield image


def _reason(exc: Exception) -> str:
    """What Pillow said, named by its kind when its message is empty or is not meant for people."""
    text = str(exc)[:200]
    return text if isinstance(exc, (OSError, SyntaxError, ValueError, EOFError)) and text else \
        f"{type(exc).__name__}: {text}"


def _check_pixel_count(size: tuple[int, int], max_pixels: int, name: str) -> None:
    """Refuse images whose declared size exceeds the pixel budget (ours, and Pillow's own bomb limit)."""
    width, height = size
    max_pixels = min(max_pixels, Image.MAX_IMAGE_PIXELS or max_pixels)
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"{name} is {width}x{height} = {width * height:,} pixels, "
            f"more than the limit of {max_pixels:,}"
        )
    if width == 0 or height == 0:
        raise EmptyImage(f"{name} has no pixels ({width}x{height})")


def _decode(image: Image.Image, name: str) -> None:
    """Decode the pixel data, reporting cut-off or damaged files as TruncatedImage."""
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        # Someone turned on Pillow's global leniency; cut-off photos would then be padded with
        # grey and encoded as if whole. Say so rather than hide it.
        warnings.warn(
            "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is on: truncated photos will not be detected",
            RuntimeWarning,
            stacklevel=3,
        )
    # Pillow's plugins raise whatever a damaged file leads them into, not only OSError: a TIFF tag of the
    # wrong type gives a TypeError, a short table an IndexError or struct.error. Each is the file's fault,
    # so any exception but MemoryError (the server's problem, not the photo's) is a damaged photo.
    try:
        image.load()
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise TruncatedImage(f"{name} is truncated or damaged: {_reason(exc)}") from None


def _apply_exif_orientation(image: Image.Image) -> None:
    """Rotate/flip the decoded image in place as its EXIF Orientation tag says."""
    try:
        ImageOps.exif_transpose(image, in_place=True)
    except Exception:  # noqa: BLE001 - corrupt EXIF must not cost us an otherwise good photo
        pass


def _wide_greyscale_to_l(image: Image.Image) -> Image.Image:
    """Scale 16/32-bit or float greyscale down to 8-bit 'L'."""
    values = np.asarray(image)
    if values.dtype.kind == "f":
        top = 1.0 if float(np.nanmax(values, initial=0.0)) <= 1.0 else 255.0
    else:
        top = 65535.0
    scaled = np.clip(np.nan_to_num(values.astype(np.float64)) * (255.0 / top), 0, 255)
    return Image.fromarray(np.rint(scaled).astype(np.uint8), mode="L")


def _flatten_alpha(image: Image.Image) -> Image.Image:
    """Composite an RGBA image onto the background colour."""
    background = Image.new("RGB", image.size, _BACKGROUND)
    background.paste(image, mask=image.getchannel("A"))
    return background


def _detection_copy(full: Image.Image, max_side: int) -> tuple[Image.Image, float]:
    """Reduce ``full`` so its longer side is at most ``max_side``; return it and the scale back."""
    if max_side <= 0:
        raise ValueError(f"max_side must be positive, got {max_side}")
    width, height = full.size
    longer = max(width, height)
    if longer <= max_side:
        return full, 1.0
    scale = longer / max_side
    target = (max(1, round(width / scale)), max(1, round(height / scale)))
    # reduce() is an exact box filter over whole pixels and far cheaper than one big resize;
    # the bilinear step that follows then only has a factor below 2 left to anti-alias.
    factor = int(scale)
    reduced = full.reduce(factor) if factor >= 2 else full
    small = reduced.resize(target, Image.Resampling.BILINEAR)
    return small, longer / max(target)


def is_photo(path: Path) -> bool:
    """A visible file with a photo's suffix."""
    return path.is_file() and path.suffix.lower() in PHOTO_SUFFIXES and not path.name.startswith(".")
