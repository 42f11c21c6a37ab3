"""Photo decoding: every bad input gets its own error, every good one comes out upright RGB."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from service.errors import (
    EmptyImage,
    ImageError,
    ImageNotFound,
    ImageTooLarge,
    NotAnImage,
    TruncatedImage,
)
from service.pipeline.decode import load_for_detection, load_image

ORIENTATION_TAG = 0x0112


def _noise(width: int, height: int, seed: int = 0) -> Image.Image:
    """A random RGB picture (compresses badly, like a real photo)."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _half_red(width: int, height: int) -> Image.Image:
    """Left half red, right half blue: shows which way an image was turned."""
    image = Image.new("RGB", (width, height), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, width // 2, height))
    return image


def _write_jpeg(path: Path, image: Image.Image, orientation: int | None = None) -> Path:
    exif = Image.Exif()
    if orientation is not None:
        exif[ORIENTATION_TAG] = orientation
    image.save(path, "JPEG", quality=90, exif=exif.tobytes())
    return path


@pytest.fixture
def refuse_decoding(monkeypatch):
    """Record any pixel decode; the list stays empty if the loader refused from the header."""
    calls = []

    def fake_load(self):
        calls.append(self.size)
        raise AssertionError("pixel data was decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", fake_load)
    return calls


# --- bad input, one error class each ----------------------------------------------------------


def test_missing_file_is_not_found(tmp_path):
    missing = tmp_path / "nobody.jpg"
    with pytest.raises(ImageNotFound, match="nobody.jpg"):
        load_image(missing)


def test_zero_byte_file_is_empty(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(EmptyImage, match="empty.jpg"):
        load_image(path)


def test_zero_bytes_are_empty():
    with pytest.raises(EmptyImage):
        load_image(b"")


def test_text_file_is_not_an_image(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is not a photo\n" * 20)
    with pytest.raises(NotAnImage, match="notes.jpg"):
        load_image(path)


def test_directory_is_not_an_image(tmp_path):
    with pytest.raises(NotAnImage):
        load_image(tmp_path)


def test_truncated_jpeg_is_truncated(tmp_path):
    whole = _write_jpeg(tmp_path / "whole.jpg", _noise(320, 240))
    cut = tmp_path / "cut.jpg"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(TruncatedImage, match="cut.jpg"):
        load_image(cut)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_truncated_png_is_truncated(tmp_path):
    buffer = io.BytesIO()
    _noise(320, 240).save(buffer, "PNG")
    with pytest.raises(TruncatedImage):
        load_image(buffer.getvalue()[: len(buffer.getvalue()) // 2])


def test_too_many_pixels_refused_from_the_header(tmp_path, refuse_decoding):
    # 7000x7000 = 49 Mpx: over our 40 Mpx limit but under Pillow's own bomb limit, so this
    # exercises our check. A 1-bit PNG of that size is a few kB on disk.
    path = tmp_path / "wide.png"
    Image.new("1", (7000, 7000)).save(path, compress_level=1)
    with pytest.raises(ImageTooLarge, match="wide.png"):
        load_image(path)
    assert refuse_decoding == []


def test_decompression_bomb_refused_without_decoding(tmp_path, refuse_decoding):
    # 20000x20000 = 400 Mpx: Pillow itself raises DecompressionBombError at open.
    path = tmp_path / "bomb.png"
    Image.new("1", (20000, 20000)).save(path, compress_level=1)
    assert path.stat().st_size < 1_000_000
    with pytest.raises(ImageTooLarge, match="bomb.png"):
        load_image(path)
    assert refuse_decoding == []


def test_pillow_bomb_warning_becomes_too_large(tmp_path, refuse_decoding):
    # 10000x10000 = 100 Mpx is between Pillow's warning and error limits; even with our own
    # limit raised it must be refused, not merely logged.
    path = tmp_path / "big.png"
    Image.new("1", (10000, 10000)).save(path, compress_level=1)
    with pytest.raises(ImageTooLarge):
        load_image(path, max_pixels=500_000_000)
    assert refuse_decoding == []


def test_every_refusal_is_an_image_error(tmp_path):
    with pytest.raises(ImageError):
        load_image(tmp_path / "missing.png")


# --- good input -------------------------------------------------------------------------------


def test_exif_orientation_is_applied(tmp_path):
    # Orientation 6: the camera was turned; the stored pixels need a 90 degree clockwise turn.
    path = _write_jpeg(tmp_path / "turned.jpg", _half_red(64, 32), orientation=6)
    image = load_image(path)
    assert image.size == (32, 64)
    pixels = np.asarray(image).astype(int)
    # Clockwise: the red left half becomes the top half.
    assert pixels[8, 16, 0] > 200 and pixels[8, 16, 2] < 60
    assert pixels[56, 16, 2] > 200 and pixels[56, 16, 0] < 60


@pytest.mark.parametrize(
    "mode, extra",
    [
        ("RGBA", {}),
        ("LA", {}),
        ("L", {}),
        ("1", {}),
        ("P", {}),
        ("P", {"transparency": 0}),
        ("CMYK", {}),
    ],
)
def test_modes_come_out_rgb(tmp_path, mode, extra):
    source = _half_red(40, 30).convert(mode)
    path = tmp_path / f"img_{mode}.{'jpg' if mode == 'CMYK' else 'png'}"
    source.save(path, **extra)
    image = load_image(path)
    assert image.mode == "RGB"
    assert image.size == (40, 30)


def test_transparent_pixels_become_white():
    source = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    source.paste((200, 10, 10, 255), (0, 0, 5, 10))
    buffer = io.BytesIO()
    source.save(buffer, "PNG")
    pixels = np.asarray(load_image(buffer.getvalue()))
    assert tuple(pixels[5, 2]) == (200, 10, 10)
    assert tuple(pixels[5, 8]) == (255, 255, 255)


def test_16_bit_greyscale_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 32768, 65535]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    pixels = np.asarray(load_image(path))
    assert pixels.shape == (1, 3, 3)
    assert list(pixels[0, :, 0]) == [0, 128, 255]


def test_bytes_input_works():
    buffer = io.BytesIO()
    _half_red(50, 20).save(buffer, "JPEG")
    image = load_image(buffer.getvalue())
    assert image.mode == "RGB" and image.size == (50, 20)


def test_string_path_works(tmp_path):
    path = _write_jpeg(tmp_path / "plain.jpg", _half_red(50, 20))
    assert load_image(str(path)).size == (50, 20)


# --- detection copy ---------------------------------------------------------------------------


def test_detection_copy_of_a_large_jpeg(tmp_path):
    path = _write_jpeg(tmp_path / "large.jpg", _half_red(4000, 3000))
    loaded = load_for_detection(path, max_side=800)
    assert loaded.full.size == (4000, 3000)
    assert max(loaded.small.size) <= 800
    assert loaded.small.size == (800, 600)
    assert loaded.scale == pytest.approx(5.0)
    assert loaded.full.mode == loaded.small.mode == "RGB"


def test_detection_copy_is_oriented_like_the_full_image(tmp_path):
    path = _write_jpeg(tmp_path / "turned.jpg", _half_red(4000, 2000), orientation=6)
    loaded = load_for_detection(path, max_side=800)
    assert loaded.full.size == (2000, 4000)
    assert loaded.small.size == (400, 800)
    # A point in the small copy maps by `scale` onto the same colour in the full image.
    for small_xy in [(200, 100), (200, 700)]:
        full_xy = tuple(int(v * loaded.scale) for v in small_xy)
        small_px = np.asarray(loaded.small.getpixel(small_xy)).astype(int)
        full_px = np.asarray(loaded.full.getpixel(full_xy)).astype(int)
        assert np.abs(small_px - full_px).max() < 40


def test_small_photo_is_its_own_detection_copy(tmp_path):
    path = _write_jpeg(tmp_path / "small.jpg", _half_red(300, 200))
    loaded = load_for_detection(path, max_side=800)
    assert loaded.small.size == loaded.full.size == (300, 200)
    assert loaded.scale == 1.0


def test_detection_copy_refuses_what_load_image_refuses(tmp_path):
    path = tmp_path / "nothing.jpg"
    path.write_bytes(b"")
    with pytest.raises(EmptyImage):
        load_for_detection(path)
