"""A corpus of hostile and odd photos, made on the spot: decompression bombs, truncated and lying files,
every Pillow mode, every EXIF orientation, extreme sizes, polyglots. Used by the tests and by
bench/malformed_photos.py; nothing here is committed as data.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

from PIL import Image

# What the service may answer for each kind of file: a code of its vocabulary, or DECODES ("ok": the
# photo decodes, and the answer depends on the faces in it).
DECODES = "ok"


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A small file declaring a huge picture (10 G pixels): refused from its header, never decoded."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    rows = zlib.compress(b"\x00" * 1024)  # a few compressed rows, far from all of them
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", rows) + _png_chunk(b"IEND", b"")


def encoded(image: Image.Image, format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def with_orientation(photo: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encoded(photo, "JPEG", exif=exif.tobytes(), quality=90)


def corpus(face_photo: Path) -> dict[str, tuple[bytes, set[str]]]:
    """name -> (bytes, the answers it may get). ``face_photo``: a real photo with one face."""
    face = Image.open(face_photo).convert("RGB")
    jpeg = face_photo.read_bytes()
    png = encoded(face, "PNG")
    files: dict[str, tuple[bytes, set[str]]] = {
        "empty": (b"", {"empty"}),
        "text": (b"name,badge\nada,17\n", {"not_an_image"}),
        "png bomb (10 G pixels declared)": (png_bomb(), {"too_large"}),
        "png bomb (wide and flat)": (png_bomb(1_000_000, 100), {"too_large"}),
        "jpeg cut in half": (jpeg[: len(jpeg) // 2], {"truncated"}),
        "jpeg without its last bytes": (jpeg[:-200], {"truncated", DECODES}),
        "png cut in half": (png[: len(png) // 2], {"truncated", "not_an_image"}),
        "png header, jpeg body": (png[:33] + jpeg, {"not_an_image", "truncated"}),
        "jpeg header, garbage": (jpeg[:20] + bytes(range(256)) * 40, {"not_an_image", "truncated"}),
        "gif + zip polyglot": (encoded(face.convert("P"), "GIF") + b"PK\x03\x04" + bytes(200), {DECODES}),
        "jpeg + pdf polyglot": (jpeg + b"%PDF-1.4\n%%EOF\n", {DECODES}),
        "1 pixel": (encoded(Image.new("RGB", (1, 1), (128, 0, 0)), "PNG"), {"no_face"}),
        "20000 x 10 pixels": (encoded(Image.new("L", (20_000, 10), 90), "PNG"), {"no_face"}),
        "10 x 20000 pixels": (encoded(Image.new("L", (10, 20_000), 90), "PNG"), {"no_face"}),
        "svg": (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', {"not_an_image"}),
    }
    for mode in ("1", "L", "P", "RGB", "RGBA", "CMYK", "I", "I;16", "F", "LA", "PA", "YCbCr", "LAB", "HSV"):
        image = face.convert(mode) if mode in ("1", "L", "P", "RGBA", "CMYK", "LA", "YCbCr", "LAB", "HSV") else \
            face.convert("L").convert(mode)
        format = "TIFF" if mode in ("CMYK", "I", "I;16", "F", "YCbCr", "LAB", "HSV") else "PNG"
        try:
            files[f"mode {mode} ({format})"] = (encoded(image, format), {DECODES, "no_face", "not_an_image"})
        except (OSError, ValueError):  # a mode this Pillow cannot write in that format: nothing to send
            continue
    for orientation in range(1, 9):
        files[f"exif orientation {orientation}"] = (with_orientation(face, orientation), {DECODES})
    return files
