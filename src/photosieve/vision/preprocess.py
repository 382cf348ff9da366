"""Decoding and preprocessing of photos: the one `load_image` used by training and serving.

Everything a photo goes through before the backbone lives here, so a model scores uploads exactly
as it saw its training data. Bad input raises `ImageDecodeError` with a reason a person can act on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from photosieve.vision.decode import (
    MAX_PIXELS,
    SUPPORTED_FORMATS,
    DecodeLimits,
    ImageDecodeError,
    decode,
)

__all__ = [
    "MAX_PIXELS",
    "SUPPORTED_FORMATS",
    "DecodeLimits",
    "ImageDecodeError",
    "PreprocessConfig",
    "load_for_model",
    "load_image",
    "preprocess",
    "resize_for_model",
    "to_input_array",
]


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
    # The side a big photo is decoded for before the resize (JPEG DCT scaling, box reduction);
    # None = `input_size`. A cascade's first stage decodes for its second stage's larger input,
    # so one decode serves both stages (`bundle.Refiner`).
    draft_size: int | None = None

    @property
    def decode_size(self) -> int:
        """The `draft_size` the decoder is given for this preprocessing."""
        return self.draft_size or self.input_size

    def to_dict(self) -> dict[str, object]:
        data: dict[str, object] = {
            "input_size": self.input_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": self.interpolation,
            "resize_mode": self.resize_mode,
        }
        if self.draft_size is not None:  # absent = input_size: older bundles read the same
            data["draft_size"] = self.draft_size
        return data

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
            draft_size=int(draft) if (draft := data.get("draft_size")) else None,  # type: ignore[call-overload]
        )


_RESAMPLE = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
}


def load_image(
    source: str | Path | bytes,
    *,
    max_pixels: int = MAX_PIXELS,
    draft_size: int | None = None,
    limits: DecodeLimits | None = None,
) -> Image.Image:
    """Decode a photo to an RGB `PIL.Image`, upright (EXIF orientation applied).

    Accepts JPEG, PNG, WebP, BMP and the first frame of a GIF. Palette, alpha, CMYK, 16-bit and
    grayscale images are converted to RGB deterministically (alpha is composited on white).
    Raises `ImageDecodeError` for anything else: empty, truncated, corrupt, not an image,
    unsupported format, more than `max_pixels` pixels, a side over 8192 px or an aspect ratio
    over 20:1 (`limits`, checked from the header, before decoding; see `vision.decode`).

    `draft_size` lets a big photo decode at a reduced scale: a JPEG through DCT scaling (1/2,
    1/4, 1/8) as long as both sides stay at least `draft_size` pixels, other formats by the
    integer box reduction the resize to the model's input would apply anyway. Photos under
    twice `draft_size` (JPEG) or six times it (others) decode exactly as without it.
    """
    limits = limits if limits is not None else DecodeLimits(max_pixels=max_pixels)
    return decode(source, limits=limits, draft_size=draft_size).image


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


def load_for_model(
    source: str | Path | bytes, cfg: PreprocessConfig, *, mirror: bool = False
) -> np.ndarray:
    """Decode and resize one photo: uint8 RGB array (H, W, 3), the ONNX graph's input.

    The same path as `preprocess` (JPEG draft decoding at `cfg.decode_size`, then the resize),
    minus the normalisation, which the exported graph does itself. `mirror` flips the photo left
    to right before the resize (a training view: `learn.train.mirrored_train_rows`).
    """
    image = load_image(source, draft_size=cfg.decode_size)
    if mirror:
        image = ImageOps.mirror(image)
    return np.asarray(resize_for_model(image, cfg), dtype=np.uint8)


def preprocess(source: str | Path | bytes, cfg: PreprocessConfig) -> np.ndarray:
    """Decode and prepare one photo for the backbone: float32 (3, H, W), normalised."""
    return to_input_array(load_image(source, draft_size=cfg.decode_size), cfg)
