"""Decoding photos under a budget: header limits, typed errors, bounded memory for big images.

Every upload and every training photo is decoded here (through `preprocess.load_image`). A file
is judged from its header before any pixel is decoded:

- format: JPEG, PNG, WebP, BMP, GIF (first frame) or MPO;
- total pixels ≤ `max_pixels` (40 MP: a phone photo is ~12 MP; 48/50-MP sensors still pass)
  for JPEG, which decodes big photos at 1/2-1/8 scale (`Image.draft`: 40 MP in 0.1 s);
  ≤ `max_pixels_lossless` (9.4 MP, 3072²) for PNG, GIF and BMP, which have no reduced-scale
  decode: every pixel is inflated and unfiltered (a 40-MP PNG took 2.2-3.2 s on the loaded
  2-core box, and a 4096² one waited past 2 s behind another under attack); ≤ `max_pixels_webp`
  (6.6 MP, 2560²) for WebP, decoded through libwebp's RGBA animation API (4096² took 1.9 s
  and 258 MB; 3200² 0.6 s);
- each side ≤ `max_side` (8192 px: an 8K photo, 8160-px 50-MP phones; beyond it only banners
  and bombs);
- long side ≤ `max_aspect` × short side (20:1) once the long side exceeds `ASPECT_FREE_SIDE`
  (256 px). A 1×39,999,999 PNG passes the pixel limit yet costs seconds and gigabytes in every
  resample; a tiny 4×128 icon costs nothing and is let through.

Bytes (uploads) are first walked by `vision.structure`: a PNG/JPEG/GIF of too many tiny pieces
(which Pillow parses in Python, one at a time) is refused before Pillow sees it.

Anything a decoder raises — Pillow's `ValueError` for inflated iCCP/zTXt chunks, `SyntaxError`
for broken PNGs, `struct.error`, `EOFError`, `OSError`, decompression-bomb errors — becomes one
`ImageDecodeError(reason, message)`; the service answers it with a 422.

With `draft_size` (the model's input side) a big photo is decoded small: JPEG/MPO through
`Image.draft` (DCT scaling, a no-op unless the photo is at least twice `draft_size` on both
sides), other formats are box-reduced per axis (`Image.reduce`) by the same integer factors the
resize to the model's square input would apply anyway (`REDUCING_GAP`), in horizontal strips, so
the only full-size buffer is the decoder's own (≤ `max_pixels` × 4 bytes). Photos under
`REDUCING_GAP × 2 × draft_size` on both sides take exactly the path they always did.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from photosieve.vision.structure import structure_problem

MAX_PIXELS = 40_000_000
MAX_SIDE = 8192
MAX_ASPECT = 20.0
ASPECT_FREE_SIDE = 256
# `resize_for_model` resizes with reducing_gap=3.0: Pillow box-reduces by int(side / target / 3)
# first. Reducing by the same factor before converting keeps big images cheap and alike.
REDUCING_GAP = 3
STRIP_ROWS = 256  # rows of the full-size image converted at a time (rounded to the factor)
_ORIENTATION = 0x0112  # EXIF tag; the transposes below are `ImageOps.exif_transpose`'s
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
MAX_PIXELS_LOSSLESS = 3072 * 3072
# Frames of an animation a scorer looks at: the first and up to 15 more, evenly spaced.
ANIMATION_FRAMES = 16
# An animation is checked frame by frame, and later frames can only be reached by decoding every
# frame before them: frames × pixels is bounded (240 frames of 256², or 1.7 of 3072²: the cost of
# one big still image).
MAX_ANIMATION_PIXELS = 16_000_000
MAX_PIXELS_WEBP = 2560 * 2560
_LOSSLESS = frozenset({"PNG", "GIF", "BMP"})
SUPPORTED_FORMATS: frozenset[str] = frozenset({"JPEG", "PNG", "WEBP", "BMP", "GIF", "MPO"})

# What Pillow's decoders raise on hostile or broken files (its own fuzzers catch the same set).
_DECODER_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    struct.error,
    zlib.error,
    IndexError,
    KeyError,
    TypeError,
    ZeroDivisionError,
    OverflowError,
    MemoryError,
)


class ImageDecodeError(ValueError):
    """A file that is not a photo we accept. `reason` is a short machine-readable code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class DecodeLimits:
    """What a file's header may declare before we decode a single pixel."""

    max_pixels: int = MAX_PIXELS
    max_side: int = MAX_SIDE
    max_aspect: float = MAX_ASPECT
    max_pixels_lossless: int = MAX_PIXELS_LOSSLESS
    max_pixels_webp: int = MAX_PIXELS_WEBP

    def pixel_limit(self, image_format: str) -> int:
        """The pixel limit for one format (never above `max_pixels`)."""
        if image_format in _LOSSLESS:
            return min(self.max_pixels, self.max_pixels_lossless)
        if image_format == "WEBP":
            return min(self.max_pixels, self.max_pixels_webp)
        return self.max_pixels


@dataclass(frozen=True)
class ImageHeader:
    """Format and full size of a photo, read from its header."""

    format: str
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


@dataclass(frozen=True)
class DecodedImage:
    """An upright RGB photo (maybe reduced for the model) and the header it came from.

    For an animation decoded with `max_frames > 1`, `frames` holds the sampled later frames
    (the first is `image`) and `n_frames` the animation's length.
    """

    image: Image.Image
    header: ImageHeader
    frames: tuple[Image.Image, ...] = ()
    n_frames: int = 1

    @property
    def all_frames(self) -> list[Image.Image]:
        """The first frame and the sampled later ones: what a scorer should look at."""
        return [self.image, *self.frames]


def _open(source: str | Path | bytes) -> Image.Image:
    if isinstance(source, bytes | bytearray):
        if len(source) == 0:
            raise ImageDecodeError("empty", "the upload is empty (0 bytes)")
        problem = structure_problem(bytes(source))
        if problem is not None:
            raise ImageDecodeError("too_many_chunks", f"the file's structure is hostile: {problem}")
        handle: io.BytesIO | str | Path = io.BytesIO(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise ImageDecodeError("missing", f"no such file: {path}")
        if path.stat().st_size == 0:
            raise ImageDecodeError("empty", f"the file is empty (0 bytes): {path}")
        handle = path
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(handle)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError("too_large", f"image is larger than allowed: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise ImageDecodeError(
            "not_an_image", "not a recognised image (expected JPEG, PNG, WebP, BMP or GIF)"
        ) from exc
    except _DECODER_ERRORS as exc:
        # e.g. ValueError: an iCCP/zTXt chunk inflating past 1 MB, or > 64 MB of text chunks.
        raise ImageDecodeError(
            "unreadable", f"could not read the image header: {type(exc).__name__}: {exc}"
        ) from exc


def check_header(header: ImageHeader, limits: DecodeLimits) -> None:
    """Raise `ImageDecodeError` unless the declared format and size are within `limits`."""
    if header.format not in SUPPORTED_FORMATS:
        raise ImageDecodeError(
            "unsupported_format",
            f"unsupported image format {header.format or 'unknown'}: "
            "use JPEG, PNG, WebP, BMP or GIF",
        )
    width, height = header.width, header.height
    if width <= 0 or height <= 0:
        raise ImageDecodeError("unreadable", "image has no pixels")
    max_pixels = limits.pixel_limit(header.format)
    if header.pixels > max_pixels:
        scope = "" if max_pixels == limits.max_pixels else f" for {header.format}"
        raise ImageDecodeError(
            "too_large",
            f"image is {width}x{height} = {header.pixels / 1e6:.1f} megapixels; "
            f"the limit is {max_pixels / 1e6:.1f}{scope}",
        )
    if max(width, height) > limits.max_side:
        raise ImageDecodeError(
            "too_large",
            f"image is {width}x{height}; each side may be at most {limits.max_side} px",
        )
    long, short = max(width, height), min(width, height)
    if long > ASPECT_FREE_SIDE and long > limits.max_aspect * short:
        raise ImageDecodeError(
            "aspect_ratio",
            f"image is {width}x{height}, {long / short:.0f}:1; "
            f"an avatar may be at most {limits.max_aspect:g}:1",
        )


def _header_of(image: Image.Image) -> ImageHeader:
    return ImageHeader(str(image.format or ""), int(image.size[0]), int(image.size[1]))


def read_header(source: str | Path | bytes, limits: DecodeLimits | None = None) -> ImageHeader:
    """The photo's format and size from its header, checked against `limits`; no decoding."""
    with _open(source) as image:
        header = _header_of(image)
    check_header(header, limits or DecodeLimits())
    return header


def reduce_factors(size: tuple[int, int], draft_size: int | None) -> tuple[int, int]:
    """Per-axis box-reduction factors for a photo headed for a `draft_size` square input."""
    if draft_size is None or draft_size <= 0:
        return (1, 1)
    target = draft_size * REDUCING_GAP
    return (max(1, size[0] // target), max(1, size[1] // target))


def decode(
    source: str | Path | bytes,
    *,
    limits: DecodeLimits | None = None,
    draft_size: int | None = None,
    max_frames: int = 1,
) -> DecodedImage:
    """Decode a photo to upright RGB within `limits`; see the module docstring.

    With `max_frames > 1` an animation (GIF, APNG, animated WebP) also yields up to
    `max_frames - 1` later frames, evenly spaced, so a harmless first frame cannot hide the
    rest; frames × pixels over `MAX_ANIMATION_PIXELS` is refused (`too_many_frames`).
    """
    limits = limits or DecodeLimits()
    with _open(source) as image:  # closes the file, whatever happens
        header = _header_of(image)
        check_header(header, limits)
        first = _first_frame(image, header, draft_size)
        n_frames = int(getattr(image, "n_frames", 1) or 1) if max_frames > 1 else 1
        if n_frames <= 1:
            return first
        return DecodedImage(first.image, header, _later_frames(image, n_frames, max_frames),
                            n_frames)  # fmt: skip


def _later_frames(image: Image.Image, n_frames: int, max_frames: int) -> tuple[Image.Image, ...]:
    """Evenly spaced frames after the first, each RGB at the first frame's size."""
    if n_frames * image.size[0] * image.size[1] > MAX_ANIMATION_PIXELS:
        raise ImageDecodeError(
            "too_many_frames",
            f"an animation of {n_frames} frames of {image.size[0]}×{image.size[1]} is too large "
            "to check every part of it",
        )
    picked = sorted({round(i * (n_frames - 1) / (max_frames - 1)) for i in range(max_frames)})
    frames = []
    try:
        for index in picked[1:]:
            image.seek(index)
            frames.append(_to_rgb(image.copy()))
    except ImageDecodeError:
        raise
    except _DECODER_ERRORS as exc:
        raise ImageDecodeError(
            "truncated", f"animation frame is truncated or corrupt: {type(exc).__name__}: {exc}"
        ) from exc
    return tuple(frames)


def _first_frame(image: Image.Image, header: ImageHeader, draft_size: int | None) -> DecodedImage:
    """The first frame, upright RGB, reduced for the model when it is big."""
    try:
        image.seek(0)  # first frame of an animation
        if draft_size is not None and image.format in ("JPEG", "MPO"):
            image.draft(None, (draft_size, draft_size))
        image.load()
        orientation = int(image.getexif().get(_ORIENTATION, 1) or 1)
        factors = _raw_factors(image.size, orientation, draft_size)
        if factors == (1, 1):  # the path every normal-sized photo always took
            upright = ImageOps.exif_transpose(image)
            return DecodedImage(_to_rgb(upright), header)
        reduced = _reduce_in_strips(image, factors)
        method = _TRANSPOSE.get(orientation)
        return DecodedImage(reduced if method is None else reduced.transpose(method), header)
    except ImageDecodeError:
        raise
    except _DECODER_ERRORS as exc:
        raise ImageDecodeError(
            "truncated",
            f"image data is truncated or corrupt: {type(exc).__name__}: {exc}",
        ) from exc


def _raw_factors(
    size: tuple[int, int], orientation: int, draft_size: int | None
) -> tuple[int, int]:
    """Reduction factors in the file's own orientation (EXIF rotation swaps the axes)."""
    width, height = size
    swapped = orientation in (5, 6, 7, 8)
    upright = (height, width) if swapped else (width, height)
    fx, fy = reduce_factors(upright, draft_size)
    return (fy, fx) if swapped else (fx, fy)


def _reduce_in_strips(image: Image.Image, factors: tuple[int, int]) -> Image.Image:
    """RGB of `image` box-reduced by `factors`, a strip of rows at a time.

    Strips start on multiples of the row factor, so each output row averages the same source
    rows as one `reduce` over the whole image; no full-size RGB/RGBA copy is ever made. RGB, L,
    RGBA and LA strips are reduced before conversion (RGBA premultiplied, as `reduce` does),
    then composited on white: cheaper than compositing every full-size pixel first.
    """
    fx, fy = factors
    width, height = image.size
    out = Image.new("RGB", (-(-width // fx), -(-height // fy)))
    peak = _integer_peak(image)
    step = max(fy, STRIP_ROWS // fy * fy)
    for top in range(0, height, step):
        strip = image.crop((0, top, width, min(height, top + step)))
        if strip.mode == "1":
            strip = strip.convert("L")
        elif strip.mode == "P":
            opaque = "transparency" not in strip.info
            strip = strip.convert("RGB" if opaque else "RGBA")
        if strip.mode in _REDUCIBLE:
            small = _to_rgb(strip.reduce((fx, fy)))
        else:
            small = _to_rgb(strip, peak=peak).reduce((fx, fy))
        out.paste(small, (0, top // fy))
    return out


_REDUCIBLE = frozenset({"RGB", "L", "RGBA", "LA"})


def _integer_peak(image: Image.Image) -> float | None:
    """The scale `_to_rgb` uses for 32-bit integer images (over the whole image, not a strip)."""
    if image.mode != "I":
        return None
    extrema = image.getextrema()
    high = float(extrema[1]) if isinstance(extrema, tuple) else 1.0  # type: ignore[arg-type]
    return max(high, 1.0)


def _to_rgb(image: Image.Image, *, peak: float | None = None) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image.copy()
    if mode == "P":
        opaque = "transparency" not in image.info
        if opaque and image.palette is not None and image.palette.mode == "RGB":
            return image.convert("RGB")  # an opaque palette: the same pixels, no RGBA copy
        image = image.convert("RGBA")  # palette may carry transparency
        mode = "RGBA"
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        if mode.startswith("I;16"):
            scale = 65535.0
        else:
            scale = peak if peak is not None else max(float(array.max()), 1.0)
        image = Image.fromarray(np.clip(array / scale * 255.0, 0, 255).astype(np.uint8), "L")
        mode = "L"
    if mode == "F":
        array = np.asarray(image, dtype=np.float64)
        image = Image.fromarray(np.clip(array, 0, 255).astype(np.uint8), "L")
        mode = "L"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV
