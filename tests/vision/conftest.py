"""Fixtures for the vision tests: one ONNX export per test session, in a temporary workdir."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from photosieve.vision.embed import Embedder


@pytest.fixture(scope="session")
def vision_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workdir shared by the session's vision tests (the ONNX export is made once)."""
    return tmp_path_factory.getbasetemp() / "photosieve-vision-work"


# The vision tests pin the plain 1280-d backbone (the product's avg+max variant has its own
# tests in test_avgmax.py); the library's default is the product's, `config.DEFAULT_BACKBONE`.
PLAIN = "efficientnet_lite0"


@pytest.fixture(scope="session")
def embedder(vision_workdir: Path) -> Embedder:
    return Embedder(PLAIN, workdir=vision_workdir, threads=1)


def jpeg_of(array: np.ndarray, quality: int = 95) -> bytes:
    """Encode an RGB array as JPEG bytes (so tests go through the real decode path)."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def to_jpeg() -> Callable[[np.ndarray], bytes]:
    return jpeg_of
