"""Properties of the photo decoder, by Hypothesis: whatever bytes arrive (random, or a real photo in each
format we take, then cut, bit-flipped, grown, shrunk, its size fields overwritten or its chunks repeated),
``load_image`` either gives an upright RGB image within the pixel limit or raises one of our ImageErrors
with a code of the vocabulary; never another exception, and never more memory than the limit allows.

Examples are derandomized and bounded, so every run tries the same files and stays short.
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from service.errors import ImageError
from service.pipeline.decode import load_for_detection, load_image

ROOT = Path(__file__).resolve().parents[1]
FACE = ROOT / "models" / "data" / "5-celebrity" / "val" / "madonna"
MAX_PIXELS = 1_000_000  # small, so that a header lying about the size is refused or stays cheap
CODES = {"empty", "not_an_image", "truncated", "too_large", "unreadable"}
FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "TIFF", "BMP")
SETTINGS = settings(max_examples=150, derandomize=True, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _face() -> Image.Image:
    """A real photo, made small so each example decodes in a millisecond or two."""
    photo = Image.open(sorted(FACE.iterdir())[0]).convert("RGB")
    photo.thumbnail((48, 48))
    return photo


def _encode(image: Image.Image, format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def _seeds() -> dict[str, bytes]:
    """The photo in every format we take, and a few variants of each (progressive, alpha, palette...)."""
    face = _face()
    return {
        "jpeg": _encode(face, "JPEG", quality=85),
        "jpeg progressive": _encode(face, "JPEG", quality=85, progressive=True),
        "png": _encode(face, "PNG"),
        "png rgba interlaced": _encode(face.convert("RGBA"), "PNG", interlace=1),
        "png 16-bit grey": _encode(face.convert("L").convert("I;16"), "PNG"),
        "webp": _encode(face, "WEBP", quality=80),
        "webp lossless alpha": _encode(face.convert("RGBA"), "WEBP", lossless=True),
        "gif": _encode(face.convert("P"), "GIF"),
        "gif animated": _encode(face.convert("P"), "GIF", save_all=True, append_images=[face.rotate(90).convert("P")]),
        "tiff": _encode(face, "TIFF"),
        "tiff deflate cmyk": _encode(face.convert("CMYK"), "TIFF", compression="tiff_adobe_deflate"),
        "bmp": _encode(face, "BMP"),
        "bmp palette": _encode(face.convert("P"), "BMP"),
    }


SEEDS = _seeds() if FACE.is_dir() else {}
SEED_SIZE = _face().size if SEEDS else None
pytestmark = [pytest.mark.skipif(not SEEDS, reason=f"5-celebrity photos not found at {FACE} (fetched by `make models`)"),
              pytest.mark.filterwarnings("ignore::UserWarning:PIL.*")]  # Pillow's notes on the damage we made


# ---- where each format keeps its width and height ----------------------------------------------------

def _size_fields(data: bytes) -> list[tuple[int, int, str]]:
    """(offset, width in bytes, struct byte order) of each width/height field the format's header holds."""
    if data.startswith(b"\x89PNG"):
        return [(16, 4, ">"), (20, 4, ">")]
    if data.startswith(b"GIF"):
        return [(6, 2, "<"), (8, 2, "<")] + [(at + 5, 2, "<") for at in _all(data, b"\x2c")[:2]]
    if data.startswith(b"BM"):
        return [(18, 4, "<"), (22, 4, "<")]
    if data.startswith(b"\xff\xd8"):
        frames = [at for marker in (b"\xff\xc0", b"\xff\xc2") for at in _all(data, marker)]
        return [(at + 5, 2, ">") for at in frames] + [(at + 7, 2, ">") for at in frames]
    if data.startswith(b"RIFF"):
        return {b"VP8X": [(24, 3, "<"), (27, 3, "<")], b"VP8 ": [(26, 2, "<"), (28, 2, "<")],
                b"VP8L": [(21, 4, "<")]}.get(bytes(data[12:16]), [])  # VP8L: 14 bits each, packed
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return _tiff_size_fields(data)
    return []


def _all(data: bytes, needle: bytes) -> list[int]:
    found, at = [], data.find(needle)
    while at != -1 and len(found) < 8:
        found.append(at)
        at = data.find(needle, at + 1)
    return found


def _tiff_size_fields(data: bytes) -> list[tuple[int, int, str]]:
    """The value fields of the first IFD's ImageWidth (256) and ImageLength (257) entries."""
    order = "<" if data[:2] == b"II" else ">"
    try:
        (ifd,) = struct.unpack_from(order + "I", data, 4)
        (count,) = struct.unpack_from(order + "H", data, ifd)
        fields = []
        for entry in range(count):
            at = ifd + 2 + 12 * entry
            tag, kind = struct.unpack_from(order + "HH", data, at)
            if tag in (256, 257):
                fields.append((at + 8, 2 if kind == 3 else 4, order))
        return fields
    except struct.error:
        return []


# ---- mutations ---------------------------------------------------------------------------------------

SIZES = st.one_of(st.sampled_from([0, 1, 2, 255, 256, 4096, 9999, 32767, 65535, 2**24 - 1, 2**31 - 1, 2**32 - 1]),
                  st.integers(0, 2**32 - 1))


@st.composite
def mutated(draw, seeds: dict[str, bytes] | None = None) -> bytes:
    """A seed photo with 1 to 4 mutations applied in turn."""
    seeds = seeds or SEEDS
    data = bytearray(seeds[draw(st.sampled_from(sorted(seeds)))])
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["truncate", "flip", "insert", "delete", "size", "duplicate", "overwrite"]))
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        if kind == "truncate":
            del data[max(at, 1):]
        elif kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif kind == "delete":
            del data[at:at + draw(st.integers(1, 64))]
        elif kind == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=16))
            data[at:at + len(chunk)] = chunk
        elif kind == "duplicate":  # a run of bytes (a chunk, a marker segment, a row...) repeated in place
            end = draw(st.integers(at + 1, min(len(data), at + 4096)))
            data[end:end] = data[at:end] * draw(st.integers(1, 3))
        else:
            for offset, width, order in _size_fields(bytes(data)):  # width, height, or both
                value = draw(st.none() | SIZES)
                if value is not None:
                    value &= (1 << (8 * width)) - 1
                    data[offset:offset + width] = value.to_bytes(width, "big" if order == ">" else "little")
            if data.startswith(b"\x89PNG") and len(data) >= 33 and draw(st.booleans()):
                _fix_png_header_crc(data)  # else the header's checksum gives the change away
    return bytes(data)


def _fix_png_header_crc(data: bytearray) -> None:
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)


# ---- the property ------------------------------------------------------------------------------------

def declared_pixels(data: bytes) -> int | None:
    """How many pixels the file's header claims, as Pillow reads it without decoding; None if it cannot."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.width * image.height
    except Exception:  # noqa: BLE001 - whatever Pillow makes of it, the decoder must refuse it
        return None


def check_decoded_or_refused(data: bytes) -> None:
    """The decoder's contract for any bytes: an RGB image within the limits, or one of our errors; and a
    header claiming more pixels than the limit is refused as too large, before any pixel is decoded."""
    declared = declared_pixels(data)
    try:
        image = load_image(data, max_pixels=MAX_PIXELS)
    except ImageError as exc:
        assert exc.code in CODES, (exc.code, exc.message)
        assert exc.message and len(exc.message) < 1000, exc.message
        assert declared is None or declared <= MAX_PIXELS or exc.code == "too_large", (declared, exc.message)
        event(exc.code)
        return
    event("decoded")
    assert declared is not None and declared <= MAX_PIXELS
    assert image.mode == "RGB"
    assert 0 < image.width * image.height <= MAX_PIXELS and min(image.size) > 0
    image.getpixel((0, 0))  # the pixels are really there


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_every_seed_decodes(name):
    """The seeds themselves are good photos: the mutations start from something the decoder takes."""
    image = load_image(SEEDS[name], max_pixels=MAX_PIXELS)
    assert image.mode == "RGB" and image.size == SEED_SIZE


@SETTINGS
@given(st.binary(max_size=4096))
@example(b"")
@example(b"\x89PNG\r\n\x1a\n")
@example(b"GIF89a")
@example(b"\xff\xd8\xff")
def test_random_bytes_are_an_image_or_refused(data):
    check_decoded_or_refused(data)


def _retyped_tiff_tag(data: bytes, tag: int, kind: int) -> bytes:
    """A little-endian TIFF with the first IFD's entry for ``tag`` declared of another type."""
    out = bytearray(data)
    (ifd,) = struct.unpack_from("<I", out, 4)
    for entry in range(struct.unpack_from("<H", out, ifd)[0]):
        at = ifd + 2 + 12 * entry
        if struct.unpack_from("<H", out, at)[0] == tag:
            out[at + 2:at + 4] = struct.pack("<H", kind)
    return bytes(out)


# Found by this test: StripOffsets (273) typed RATIONAL (5) made Pillow's TIFF loader raise TypeError,
# which the decoder let through (a 500 over HTTP); now it is "truncated".
STRIP_OFFSETS_AS_RATIONAL = _retyped_tiff_tag(SEEDS["tiff"], 273, 5) if SEEDS else b""


@settings(SETTINGS, max_examples=600)
@given(mutated())
@example(STRIP_OFFSETS_AS_RATIONAL)
def test_damaged_photos_are_an_image_or_refused(data):
    check_decoded_or_refused(data)


@SETTINGS
@given(mutated(), st.integers(1, 400))
def test_detection_copies_stay_within_their_side(data, max_side):
    """load_for_detection adds the reduced copy: its longer side is at most ``max_side``, and the scale
    maps it back onto the full image."""
    try:
        found = load_for_detection(data, max_side=max_side, max_pixels=MAX_PIXELS)
    except ImageError as exc:
        assert exc.code in CODES
        return
    longer, reduced = max(found.full.size), max(found.small.size)
    assert found.small.mode == found.full.mode == "RGB" and reduced <= max_side
    assert found.scale >= 1 and abs(reduced * found.scale - longer) <= 1e-6 * longer


@pytest.mark.parametrize("format", FORMATS)
def test_a_header_declaring_a_huge_picture_is_too_large(format):
    """Each format's size fields, found by _size_fields, really are the ones the decoder reads: set to
    65535 x 65535 they make the photo too large (so the size mutations above test what they claim)."""
    data = bytearray(SEEDS[format.lower()])
    fields = _size_fields(bytes(data))
    assert fields
    for offset, width, order in fields:
        value = 0x0FFFFFFF if format == "WEBP" and width == 4 else 65535  # VP8L: 16384 x 16384, version 0
        data[offset:offset + width] = value.to_bytes(width, "big" if order == ">" else "little")
    if format == "PNG":
        _fix_png_header_crc(data)
    with pytest.raises(ImageError) as refused:
        load_image(bytes(data), max_pixels=MAX_PIXELS)
    assert refused.value.code == "too_large", refused.value.message


def test_memory_stays_bounded_under_an_address_space_cap(tmp_path):
    """The damaged-photo property again (fewer examples) in a child process whose address space is capped
    at what it uses after start-up plus 128 MB: a decoder allocating for the size a header claims, instead
    of refusing it, runs out (a MemoryError is not one of our errors) and the child fails with the example."""
    script = (
        "import resource, sys\n"
        "sys.path[:0] = [sys.argv[1], sys.argv[2]]\n"
        "import test_properties_decode as t\n"
        "from hypothesis import given, settings\n"
        "used = int(open('/proc/self/statm').read().split()[0]) * resource.getpagesize()\n"
        "resource.setrlimit(resource.RLIMIT_AS, (used + 128 * 2**20, resource.RLIM_INFINITY))\n"
        "given(t.mutated())(settings(t.SETTINGS, max_examples=300)(t.check_decoded_or_refused))()\n"
        "print('ok', used // 2**20)\n"
    )
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script, str(ROOT / "tests"), str(ROOT)], capture_output=True,
                          text=True, timeout=300, env=env, cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.startswith("ok"), (done.stdout + done.stderr)[-4000:]
