"""Fixtures for the data tests: drawn scenes written to disk in any format.

A scene is a smooth gradient with a few shapes (little noise), like a photo: its perceptual hash
survives re-encoding and resizing, as a real photo's does, while different seeds differ widely.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from drawing import encode

SavePhoto = Callable[..., Path]


def draw_scene(seed: int, size: tuple[int, int] = (160, 120)) -> Image.Image:
    """A deterministic RGB picture: horizontal gradient plus four coloured shapes."""
    rng = np.random.default_rng(seed)
    w, h = size
    a, b = rng.integers(0, 255, size=(2, 3))
    t = np.linspace(0, 1, w)[None, :, None]  # (1, W, 1)
    pixels = (a * (1 - t) + b * t) * np.ones((h, 1, 1)) + rng.normal(0, 3, size=(h, w, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(4):
        x0, y0 = int(rng.integers(0, w - 30)), int(rng.integers(0, h - 30))
        x1, y1 = x0 + int(rng.integers(20, w // 2)), y0 + int(rng.integers(20, h // 2))
        colour = tuple(int(c) for c in rng.integers(0, 255, size=3))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((x0, y0, x1, y1), fill=colour)
    return image


@pytest.fixture
def save_photo() -> SavePhoto:
    """`save_photo(path, seed=0, fmt="JPEG", image=None, **kw)`: write a scene, return path."""

    def save(
        path: Path, seed: int = 0, fmt: str = "JPEG", image: Image.Image | None = None, **kw: object
    ) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        picture = image if image is not None else draw_scene(seed)
        path.write_bytes(encode(picture, fmt, **kw))
        return path

    return save
