"""`load_image`: every accepted format decodes upright to RGB; every bad input is a typed error."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from photosieve.vision.preprocess import (
    ImageDecodeError,
    PreprocessConfig,
    load_for_model,
    load_image,
    preprocess,
)


def _encode(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def _halves(size: tuple[int, int] = (60, 40)) -> Image.Image:
    """Left half red, right half blue."""
    image = Image.new("RGB", size, (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, size[0] // 2, size[1]))
    return image


@pytest.mark.parametrize(
    ("fmt", "tolerance"), [("JPEG", 12.0), ("PNG", 0.0), ("WEBP", 12.0), ("BMP", 0.0)]
)
def test_formats_decode_to_rgb(
    fmt: str, tolerance: float, photo_factory: Callable[..., Image.Image]
) -> None:
    original = photo_factory(3, (80, 64))
    decoded = load_image(_encode(original, fmt))
    assert decoded.mode == "RGB" and decoded.size == (80, 64)
    diff = np.abs(np.asarray(decoded, float) - np.asarray(original, float)).mean()
    assert diff <= tolerance


def test_gif_gives_its_first_frame() -> None:
    frames = [Image.new("RGB", (32, 32), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    data = _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)
    decoded = load_image(data)
    assert decoded.mode == "RGB"
    assert np.asarray(decoded)[16, 16].tolist() == [255, 0, 0]


def test_exif_orientation_is_applied() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display needs a 90° clockwise turn
    data = _encode(_halves((60, 40)), "JPEG", quality=95, exif=exif.tobytes())
    decoded = np.asarray(load_image(data), dtype=int)
    assert decoded.shape == (60, 40, 3)  # upright: portrait now
    top, bottom = decoded[5, 20], decoded[55, 20]
    assert top[0] > 200 and top[2] < 60  # the left (red) half is now on top
    assert bottom[2] > 200 and bottom[0] < 60


def test_palette_with_transparency_composites_on_white() -> None:
    image = Image.new("P", (20, 20), 0)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.paste(1, (0, 0, 10, 20))
    data = _encode(image, "PNG", transparency=0)
    pixels = np.asarray(load_image(data))
    assert pixels[5, 5].tolist() == [255, 0, 0]
    assert pixels[5, 15].tolist() == [255, 255, 255]  # transparent → white


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_composites_on_white(mode: str) -> None:
    rgba = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    rgba.paste((0, 0, 0, 255), (0, 0, 5, 10))
    pixels = np.asarray(load_image(_encode(rgba.convert(mode), "PNG")))
    assert pixels[5, 2].tolist() == [0, 0, 0]
    assert pixels[5, 7].tolist() == [255, 255, 255]


def test_cmyk_grayscale_and_16_bit_become_rgb_deterministically() -> None:
    cmyk = _encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG", quality=95)
    gray = _encode(Image.new("L", (16, 16), 77), "PNG")
    sixteen = np.zeros((16, 16), np.uint16)
    sixteen[:, 8:] = 65535
    deep = _encode(Image.fromarray(sixteen), "PNG")
    for data in (cmyk, gray, deep):
        first, second = load_image(data), load_image(data)
        assert first.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(first), np.asarray(second))
    red = np.asarray(load_image(cmyk))[8, 8]
    assert red[0] > 200 and red[1] < 60 and red[2] < 60
    assert np.asarray(load_image(gray))[3, 3].tolist() == [77, 77, 77]
    deep_px = np.asarray(load_image(deep))
    assert deep_px[0, 0].tolist() == [0, 0, 0] and deep_px[0, 15].tolist() == [255, 255, 255]


def test_paths_and_bytes_decode_alike(tmp_path: Path, jpeg_bytes: bytes) -> None:
    path = tmp_path / "a.jpg"
    path.write_bytes(jpeg_bytes)
    np.testing.assert_array_equal(np.asarray(load_image(path)), np.asarray(load_image(jpeg_bytes)))


def test_big_jpeg_decodes_at_reduced_scale_for_the_model() -> None:
    big = Image.linear_gradient("L").resize((1600, 1200)).convert("RGB")
    data = _encode(big, "JPEG", quality=90)
    assert load_image(data).size == (1600, 1200)
    drafted = load_image(data, draft_size=224)
    assert drafted.size == (400, 300)  # 1/4 scale: both sides still ≥ 224
    cfg = PreprocessConfig()
    array = load_for_model(data, cfg)
    assert array.shape == (224, 224, 3) and array.dtype == np.uint8
    assert preprocess(data, cfg).shape == (3, 224, 224)


def _reason(source: bytes | Path) -> str:
    with pytest.raises(ImageDecodeError) as info:
        load_image(source)
    assert str(info.value)  # a message a person can read
    return info.value.reason


def test_bad_inputs_raise_typed_errors(tmp_path: Path, jpeg_bytes: bytes) -> None:
    assert _reason(b"") == "empty"
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    assert _reason(empty) == "empty"
    assert _reason(tmp_path / "nowhere.jpg") == "missing"
    assert _reason(b"<html>definitely not a photo</html>") == "not_an_image"
    assert _reason(jpeg_bytes[: len(jpeg_bytes) // 2]) == "truncated"
    png = _encode(Image.new("RGB", (64, 64), (1, 2, 3)), "PNG")
    assert _reason(png[: len(png) - 30]) == "truncated"
    assert isinstance(ImageDecodeError("x", "y"), ValueError)


@pytest.mark.parametrize("fmt", ["TIFF", "ICO"])
def test_unsupported_formats_are_rejected(fmt: str) -> None:
    data = _encode(Image.new("RGB", (32, 32), (9, 9, 9)), fmt)
    assert _reason(data) == "unsupported_format"


def test_decompression_bomb_is_rejected_from_the_header(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _encode(Image.new("1", (10_000, 5_000)), "PNG")  # 50 MP, a few kB on disk
    assert len(data) < 200_000

    def no_decoding(self: ImageFile.ImageFile) -> None:
        raise AssertionError("the pixels must not be decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(ImageDecodeError, match="megapixels") as info:
        load_image(data)
    assert info.value.reason == "too_large"
