"""Fixtures of the reviewer-UI tests: a fresh app (`service_harness`), a live server, chromium."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from live_server import LiveServer
from photosieve.bundle import ModelBundle
from service_harness import Live, build_service, upload_photos

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def ui_app(
    tmp_path: Path, tiny_bundle: ModelBundle, embedder: Any
) -> Iterator[tuple[FastAPI, str]]:
    """The real app on SQLite (every upload reviewed) with a reviewer "rita", an admin "ada"
    (both with the harness's PASSWORD) and the "forum" client's API key."""
    service = build_service(tmp_path, f"sqlite:///{tmp_path / 'service.db'}", tiny_bundle, embedder)
    service.add_user("rita")
    service.add_user("ada", "admin")
    yield service.app, service.api_key
    service.close()


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
