"""Shared test fixtures: drawn photos and the benchmark data beside the checkout."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from photosieve.paths import shared_data_dir


def draw_photo(seed: int, size: tuple[int, int] = (96, 80), *, shape: str = "circle") -> Image.Image:
    """A small deterministic RGB picture: noisy background plus one coloured shape."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, size=3)
    noise = rng.normal(0, 12, size=(size[1], size[0], 3))
    pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    draw = ImageDraw.Draw(image)
    w, h = size
    box = (w // 5, h // 5, 4 * w // 5, 4 * h // 5)
    colour = tuple(int(c) for c in rng.integers(0, 255, size=3))
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    else:
        draw.rectangle(box, fill=colour)
    return image


def encode(image: Image.Image, fmt: str = "JPEG", **kwargs: object) -> bytes:
    """Encode a PIL image to bytes in the given format."""
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


@pytest.fixture
def photo_factory() -> Callable[..., Image.Image]:
    return draw_photo


@pytest.fixture
def jpeg_bytes() -> bytes:
    return encode(draw_photo(0), "JPEG", quality=90)


@pytest.fixture(scope="session")
def bench_dir() -> Path:
    """`../shared/data/bench` (real photos); tests that need it skip with a reason if absent."""
    data = shared_data_dir()
    if data is None or not (data / "bench" / "manifest.csv").is_file():
        pytest.skip("benchmark data ../shared/data/bench is not beside the checkout")
    return data / "bench"
