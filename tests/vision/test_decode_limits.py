"""Decoding under a budget: hostile files are typed errors, big images decode small and cheap."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

import hostile_files as hostile
from drawing import draw_photo, encode
from photosieve.vision.decode import (
    DecodeLimits,
    ImageDecodeError,
    _reduce_in_strips,
    decode,
    read_header,
)
from photosieve.vision.preprocess import PreprocessConfig, load_for_model, load_image

SRC = Path(__file__).resolve().parents[2] / "src"
TESTS = Path(__file__).resolve().parents[1]


def _reason(data: bytes, **kwargs: object) -> str:
    with pytest.raises(ImageDecodeError) as info:
        decode(data, **kwargs)  # type: ignore[arg-type]
    assert info.value.message
    return info.value.reason


@pytest.mark.parametrize(
    "data", [hostile.iccp_bomb(), hostile.ztxt_bomb()], ids=["iccp-4MB", "ztxt-4MB"]
)
def test_png_ancillary_chunk_bombs_are_typed_errors(data: bytes) -> None:
    # Finding 5: Pillow raises ValueError inside Image.open; it used to escape as a 500.
    assert _reason(data) == "unreadable"
    assert _reason(data, draft_size=224) == "unreadable"


def test_many_compressed_text_chunks_are_refused(tmp_path: Path) -> None:
    data = hostile.many_ztxt()  # 80 zTXt chunks of 1 MB each: 80 MB to inflate
    assert _reason(data) == "too_many_chunks"  # bytes: refused before Pillow inflates any
    path = tmp_path / "text.png"
    path.write_bytes(data)
    assert _reason(path) == "unreadable"  # files: Pillow's own 64 MB text budget, typed


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("png-600k-text-chunks", hostile.many_small_chunks(600_000)),
        ("jpeg-2.5M-com-segments", hostile.jpeg_with_segments(2_500_000)),
        ("jpeg-5MB-stray-bytes", hostile.jpeg_with_stray_bytes(5_000_000)),
        ("gif-1M-extensions", hostile.gif_with_extensions(1_000_000)),
        ("gif-6MB-stray-bytes", hostile.gif_with_stray_bytes(6_000_000)),
    ],
)
def test_files_of_many_tiny_pieces_are_refused_quickly(name: str, data: bytes) -> None:
    # Pillow parses these pieces in Python one at a time: 5-11 s for a 10 MB file.
    started = time.perf_counter()
    assert _reason(data) == "too_many_chunks", name
    assert time.perf_counter() - started < 1.0


def test_many_small_chunks_still_decode() -> None:
    assert decode(hostile.many_small_chunks(1000)).image.size == (8, 8)  # under the cap


def _no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: ImageFile.ImageFile) -> None:
        raise AssertionError("the pixels must not be decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (hostile.header_only_png(1, 39_999_999), "too_large"),  # finding 6: under 40 MP
        (hostile.header_only_png(8193, 1000), "too_large"),
        (hostile.jpeg_header(65_000, 60), "too_large"),
        (hostile.gif_header(65_535, 65_535), "too_large"),
        (hostile.header_only_png(6001, 300), "aspect_ratio"),
        (hostile.header_only_png(300, 6001), "aspect_ratio"),
    ],
    ids=["1x39999999", "8193-wide", "jpeg-65000x60", "gif-65535", "20.003:1", "1:20.003"],
)
def test_thin_and_huge_headers_are_refused_before_decoding(
    data: bytes, reason: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_decoding(monkeypatch)
    assert _reason(data) == reason
    with pytest.raises(ImageDecodeError):
        read_header(data)


@pytest.mark.parametrize(
    "size", [(32, 32), (64, 64), (128, 128), (1, 1), (4, 128), (2000, 100), (3072, 3072)]
)
def test_tiny_avatars_and_photos_within_limits_are_accepted(size: tuple[int, int]) -> None:
    header = read_header(encode(Image.new("L", size, 9), "PNG"))
    assert (header.width, header.height) == size


def test_lossless_formats_have_a_lower_pixel_limit_than_jpeg(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    jpeg = encode(Image.new("L", (8192, 4096), 9), "JPEG")  # 33.6 MP: draft-decodes cheaply
    assert read_header(jpeg).width == 8192
    png = hostile.header_only_png(6300, 6300)  # 39.7 MP, no reduced-scale decode
    _no_decoding(monkeypatch)
    with pytest.raises(ImageDecodeError, match="for PNG") as info:
        read_header(png)
    assert info.value.reason == "too_large"


def test_webp_has_a_lower_pixel_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    assert read_header(encode(Image.new("RGB", (2560, 2560)), "WEBP")).width == 2560
    big = encode(Image.new("RGB", (2700, 2700)), "WEBP")  # 7.3 MP: no reduced decode for WebP
    _no_decoding(monkeypatch)
    assert _reason(big) == "too_large"


def test_limits_are_configurable() -> None:
    data = encode(Image.new("RGB", (300, 100)), "PNG")
    assert _reason(data, limits=DecodeLimits(max_aspect=2.0)) == "aspect_ratio"
    assert _reason(data, limits=DecodeLimits(max_side=200)) == "too_large"
    assert _reason(data, limits=DecodeLimits(max_pixels=20_000)) == "too_large"


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P"])
def test_strip_reduction_equals_one_whole_reduce(mode: str) -> None:
    photo = draw_photo(3, (1500, 1400)).resize((1501, 1403))
    image = photo.convert(mode) if mode != "RGBA" else photo.convert("RGBA")
    if mode == "RGBA":
        image.putalpha(Image.linear_gradient("L").resize(image.size))
    whole = {"RGBA": image, "P": image.convert("RGB")}.get(mode, image).reduce((2, 3))
    if whole.mode == "RGBA":
        background = Image.new("RGBA", whole.size, (255, 255, 255, 255))
        whole = Image.alpha_composite(background, whole)
    strips = _reduce_in_strips(image, (2, 3))
    np.testing.assert_array_equal(np.asarray(strips), np.asarray(whole.convert("RGB")))


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_big_png_reduced_for_the_model_matches_the_full_decode(mode: str) -> None:
    photo = draw_photo(4, (1600, 1400)).convert(mode)
    data = encode(photo, "PNG")
    cfg = PreprocessConfig()
    decoded = decode(data, draft_size=224)
    assert decoded.image.size == (800, 700)  # factors 1600 // 672, 1400 // 672
    assert (decoded.header.width, decoded.header.height) == (1600, 1400)
    reduced = load_for_model(data, cfg).astype(int)
    full = np.asarray(
        load_image(data).resize((224, 224), Image.Resampling.BILINEAR, reducing_gap=3.0)
    ).astype(int)
    assert np.abs(reduced - full).max() <= 2


def test_exif_rotated_big_png_comes_out_upright() -> None:
    photo = draw_photo(5, (1400, 700))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to view
    data = encode(photo, "PNG", exif=exif)
    full = load_image(data)
    reduced = load_image(data, draft_size=224)
    # Upright 700×1400: reduced by (1, 2) in the upright frame, i.e. (2, 1) in the file's.
    assert full.size == (700, 1400) and reduced.size == (700, 700)
    np.testing.assert_allclose(
        np.asarray(full.reduce((1, 2)), dtype=float), np.asarray(reduced, dtype=float), atol=1
    )


def test_normal_photos_decode_exactly_as_before() -> None:
    # ≤ 447 px JPEGs (the bench's photos are ≤ 224 px) and < 1344 px others: draft is a no-op.
    for size in [(224, 224), (224, 168), (447, 447), (96, 80)]:
        data = encode(draw_photo(6, size), "JPEG", quality=90)
        np.testing.assert_array_equal(
            np.asarray(load_image(data)), np.asarray(load_image(data, draft_size=224))
        )
    for fmt in ("PNG", "WEBP", "GIF", "BMP"):
        data = encode(draw_photo(7, (1300, 1000)), fmt)
        np.testing.assert_array_equal(
            np.asarray(load_image(data)), np.asarray(load_image(data, draft_size=224))
        )


def test_animated_gif_decodes_its_first_frame_only() -> None:
    assert decode(hostile.animated_gif(200)).image.size == (64, 64)


_MEASURE = textwrap.dedent(
    """
    import sys
    sys.path[:0] = [{src!r}, {tests!r}]
    import hostile_files
    from photosieve.vision.decode import MAX_PIXELS, DecodeLimits, decode

    def rss():
        fields = dict(line.split(":", 1) for line in open("/proc/self/status"))
        return int(fields["VmHWM"].split()[0]) // 1024, int(fields["VmRSS"].split()[0]) // 1024

    data = hostile_files.solid_png({w}, {h}, {mode!r})
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # reset the peak (VmHWM) to the current RSS
    before = rss()[1]
    limits = DecodeLimits(max_pixels_lossless=MAX_PIXELS)  # the defaults refuse 6300² PNGs
    image = decode(data, draft_size=224, limits=limits).image
    print(image.size[0], image.size[1], rss()[0] - before)
    """
)


@pytest.mark.parametrize(
    ("size", "mode"), [((6300, 6300), "RGB"), ((6300, 6300), "RGBA"), ((6300, 6300), "P")]
)
def test_big_cheap_png_decodes_with_bounded_memory(size: tuple[int, int], mode: str) -> None:
    # Finding 6: a 113 KB 6300×6300 PNG used to cost ~400-900 MB (full-size RGB/RGBA copies).
    script = _MEASURE.format(src=str(SRC), tests=str(TESTS), w=size[0], h=size[1], mode=mode)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True
    )
    width, height, growth_mb = (int(v) for v in done.stdout.split())
    assert (width, height) == (700, 700)
    # The decoder's own buffer (≤ 4 bytes/pixel, 159 MB here) plus strips; was 484-939 MB.
    assert growth_mb < 230, done.stdout


def test_8000_square_solid_png_is_refused_from_its_header(monkeypatch: pytest.MonkeyPatch) -> None:
    data = hostile.header_only_png(8000, 8000)  # 64 MP: over the pixel limit
    _no_decoding(monkeypatch)
    assert _reason(data, draft_size=224) == "too_large"


def test_garbage_after_a_valid_signature_is_a_typed_error() -> None:
    png = encode(draw_photo(8, (64, 64)), "PNG")
    for cut in (9, 20, 33, 40, len(png) // 2):
        with pytest.raises(ImageDecodeError):
            decode(png[:cut] + b"\xde\xad\xbe\xef" * 8)
    buffer = io.BytesIO()
    draw_photo(9, (64, 64)).save(buffer, "GIF")
    gif = bytearray(buffer.getvalue())
    gif[10] ^= 0xFF
    with pytest.raises(ImageDecodeError):
        decode(bytes(gif[:30]))


def test_bench_photos_decode_exactly_as_without_draft(bench_dir: Path) -> None:
    # The benchmark's photos are ≤ 224-px JPEGs: draft and reduction must not touch a pixel.
    import pandas as pd

    manifest = pd.read_csv(bench_dir / "manifest.csv").sample(60, random_state=1)
    cfg = PreprocessConfig()
    for relative in manifest["path"]:
        data = (bench_dir / relative).read_bytes()
        full = load_image(data)
        np.testing.assert_array_equal(
            np.asarray(full), np.asarray(load_image(data, draft_size=224))
        )
        resized = full.resize((224, 224), Image.Resampling.BILINEAR, reducing_gap=3.0)
        np.testing.assert_array_equal(load_for_model(data, cfg), np.asarray(resized))
