"""Decoding and preprocessing of photos: the one `load_image` used by training and serving.

Everything a photo goes through before the backbone lives here, so a model scores uploads exactly
as it saw its training data. Bad input raises `ImageDecodeError` with a reason a person can act on.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# A 40-megapixel ceiling: a phone photo is ~12 MP; more is a decompression bomb for an avatar.
MAX_PIXELS = 40_000_000
SUPPORTED_FORMATS: frozenset[str] = frozenset({"JPEG", "PNG", "WEBP", "BMP", "GIF", "MPO"})


class ImageDecodeError(ValueError):
    """A file that is not a photo we accept. `reason` is a short machine-readable code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class PreprocessConfig:
    """How a decoded photo becomes the backbone's input; it travels with the weights."""

    input_size: int = 224
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    interpolation: str = "bilinear"
    # "squash" resizes the whole photo to a square: an avatar's offending detail may sit at its
    # edge, and a centre crop could cut it away.
    resize_mode: str = "squash"

    def to_dict(self) -> dict[str, object]:
        return {
            "input_size": self.input_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": self.interpolation,
            "resize_mode": self.resize_mode,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> PreprocessConfig:
        mean = tuple(float(v) for v in data["mean"])  # type: ignore[attr-defined]
        std = tuple(float(v) for v in data["std"])  # type: ignore[attr-defined]
        return cls(
            input_size=int(data["input_size"]),  # type: ignore[call-overload]
            mean=(mean[0], mean[1], mean[2]),
            std=(std[0], std[1], std[2]),
            interpolation=str(data["interpolation"]),
            resize_mode=str(data.get("resize_mode", "squash")),
        )


_RESAMPLE = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
}


def _open(source: str | Path | bytes) -> Image.Image:
    if isinstance(source, bytes | bytearray):
        if len(source) == 0:
            raise ImageDecodeError("empty", "the upload is empty (0 bytes)")
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
            image = Image.open(handle)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError("too_large", f"image is larger than allowed: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise ImageDecodeError(
            "not_an_image", "not a recognised image (expected JPEG, PNG, WebP, BMP or GIF)"
        ) from exc
    except OSError as exc:
        raise ImageDecodeError("unreadable", f"could not read the image: {exc}") from exc
    return image


def load_image(
    source: str | Path | bytes, *, max_pixels: int = MAX_PIXELS, draft_size: int | None = None
) -> Image.Image:
    """Decode a photo to an RGB `PIL.Image`, upright (EXIF orientation applied).

    Accepts JPEG, PNG, WebP, BMP and the first frame of a GIF. Palette, alpha, CMYK, 16-bit and
    grayscale images are converted to RGB deterministically (alpha is composited on white).
    Raises `ImageDecodeError` for anything else: empty, truncated, not an image, unsupported
    format, or more than `max_pixels` pixels (checked from the header, before decoding).

    `draft_size` lets a JPEG decode at a reduced scale (1/2, 1/4, 1/8) as long as both sides stay
    at least `draft_size` pixels: much faster for big photos headed for a small model input.
    """
    with _open(source) as image:  # closes the file, whatever happens
        _check_header(image, max_pixels)
        try:
            image.seek(0)  # first frame of an animation
            if draft_size is not None and image.format in ("JPEG", "MPO"):
                image.draft(None, (draft_size, draft_size))
            image.load()
            upright = ImageOps.exif_transpose(image)
            return _to_rgb(upright)
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise ImageDecodeError(
                "truncated", f"image data is truncated or corrupt: {exc}"
            ) from exc


def _check_header(image: Image.Image, max_pixels: int) -> None:
    if image.format not in SUPPORTED_FORMATS:
        raise ImageDecodeError(
            "unsupported_format",
            f"unsupported image format {image.format or 'unknown'}: "
            "use JPEG, PNG, WebP, BMP or GIF",
        )
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageDecodeError("unreadable", "image has no pixels")
    if width * height > max_pixels:
        raise ImageDecodeError(
            "too_large",
            f"image is {width}x{height} = {width * height / 1e6:.1f} megapixels; "
            f"the limit is {max_pixels / 1e6:.0f}",
        )


def _to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image.copy()
    if mode == "P":
        image = image.convert("RGBA")  # palette may carry transparency
        mode = "RGBA"
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if mode.startswith("I;16") else max(float(array.max()), 1.0)
        image = Image.fromarray(np.clip(array / peak * 255.0, 0, 255).astype(np.uint8), "L")
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


def resize_for_model(image: Image.Image, cfg: PreprocessConfig) -> Image.Image:
    """Resize an RGB photo to the backbone's square input."""
    if cfg.resize_mode != "squash":
        raise ValueError(f"unknown resize_mode {cfg.resize_mode!r}; known: 'squash'")
    try:
        resample = _RESAMPLE[cfg.interpolation]
    except KeyError as exc:
        raise ValueError(
            f"unknown interpolation {cfg.interpolation!r}; known: {sorted(_RESAMPLE)}"
        ) from exc
    size = (cfg.input_size, cfg.input_size)
    if image.size == size:
        return image
    return image.resize(size, resample=resample, reducing_gap=3.0)


def to_input_array(image: Image.Image, cfg: PreprocessConfig) -> np.ndarray:
    """RGB photo → normalised float32 array (3, H, W) ready for the backbone."""
    resized = resize_for_model(image, cfg)
    pixels = np.asarray(resized, dtype=np.float32) / np.float32(255.0)  # (H, W, 3)
    mean = np.asarray(cfg.mean, dtype=np.float32)
    std = np.asarray(cfg.std, dtype=np.float32)
    normalised: np.ndarray = (pixels - mean) / std
    return np.ascontiguousarray(normalised.transpose(2, 0, 1), dtype=np.float32)  # (3, H, W)


def load_for_model(source: str | Path | bytes, cfg: PreprocessConfig) -> np.ndarray:
    """Decode and resize one photo: uint8 RGB array (H, W, 3), the ONNX graph's input.

    The same path as `preprocess` (JPEG draft decoding at the model's size, then the resize),
    minus the normalisation, which the exported graph does itself.
    """
    image = load_image(source, draft_size=cfg.input_size)
    return np.asarray(resize_for_model(image, cfg), dtype=np.uint8)


def preprocess(source: str | Path | bytes, cfg: PreprocessConfig) -> np.ndarray:
    """Decode and prepare one photo for the backbone: float32 (3, H, W), normalised."""
    return to_input_array(load_image(source, draft_size=cfg.input_size), cfg)
