"""Fixtures of the reviewer-UI tests: one tiny real bundle per session, a fresh app per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from ui_harness import Live, build_app, tiny_bundle, upload_photos

from live_server import LiveServer
from photosieve.bundle import ModelBundle

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def ui_embedder() -> Any:
    from photosieve.vision.embed import Embedder

    return Embedder(threads=1)  # ONNX export cached in ./work/onnx


@pytest.fixture(scope="session")
def ui_bundle(ui_embedder: Any) -> ModelBundle:
    return tiny_bundle(ui_embedder)


@pytest.fixture
def ui_app(
    tmp_path: Path, ui_bundle: ModelBundle, ui_embedder: Any
) -> Iterator[tuple[FastAPI, str]]:
    app, api_key = build_app(tmp_path, ui_bundle, ui_embedder)
    yield app, api_key
    app.state.engine.dispose()


@pytest.fixture
def live(ui_app: tuple[FastAPI, str]) -> Iterator[Live]:
    """The real app under uvicorn on a free loopback port, three photos in its queue."""
    app, api_key = ui_app
    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        ids = upload_photos(client, api_key)
        yield Live(app, server.url, api_key, ids)


@pytest.fixture
def browser() -> Any:
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is missing (install Debian chromium: `make browser`)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()
