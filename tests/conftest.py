"""Shared test fixtures: drawn photos, the benchmark data beside the checkout, and (through the
`service_harness` plugin) the tiny bundle, databases and app of the service-level tests.

Layout: the folders mirror `src/photosieve/` — a test lives in the folder of the module it tests
(`tests/evaluate/test_diagnose.py` for `photosieve.evaluate.diagnose`, `tests/feedback/
test_export.py` for `photosieve.feedback.export`), and tests of a top-level module sit at the top
(`test_scoring.py`). The two rules for what is not one module: a stage's CLI commands are tested
with the stage (`tests/learn/test_cli.py` for `photosieve train`), and `tests/cli/` holds the
commands of no single stage (`demo`, the workdir every command shares); the reviewer pages
(`photosieve.service.routes.ui` and its templates) are tested in `tests/ui/`, beside the browser.

Helpers shared across folders are modules here, at the top, importable from every folder:
`drawing`, `hostile_files`, `live_server`, `postgres_db`, `s3_server` and `service_harness`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PIL import Image

from drawing import draw_photo, encode
from photosieve.paths import shared_data_dir

pytest_plugins = ["service_harness", "s3_server"]  # tiny_bundle, db_url, service, s3_bucket, ...


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


@pytest.fixture(scope="module")
def restore_backbones() -> Iterator[None]:
    """Forget the backbones a test module registers (tuned ones: `vision.tuned`) when it ends,
    so the registry other modules see is the built-in one."""
    from photosieve.vision import backbone

    before = dict(backbone._REGISTRY)
    yield
    backbone._REGISTRY.clear()
    backbone._REGISTRY.update(before)
