"""Shared test fixtures: drawn photos and the benchmark data beside the checkout."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from drawing import draw_photo, encode
from photosieve.paths import shared_data_dir


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
