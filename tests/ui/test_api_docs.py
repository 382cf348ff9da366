"""The API docs work offline: Swagger UI and ReDoc come from local files, list the operations
and offer an Authorize button for the declared API-key and session schemes."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

import httpx
import pytest

from service_harness import Live


def test_openapi_declares_the_security_schemes(live: Live) -> None:
    spec = httpx.get(f"{live.url}/openapi.json").json()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["ApiKeyBearer"]["scheme"] == "bearer"
    assert schemes["ApiKeyHeader"] == {
        **schemes["ApiKeyHeader"],
        "in": "header",
        "name": "X-API-Key",
    }
    assert schemes["ReviewerSession"]["in"] == "cookie"
    upload = spec["paths"]["/v1/uploads"]["post"]
    assert {"ApiKeyBearer": []} in upload["security"]


@pytest.mark.browser
@pytest.mark.parametrize("page_path", ["/docs", "/redoc"])
def test_docs_render_with_no_network(live: Live, browser: Any, page_path: str) -> None:
    page = browser.new_page()
    local = urlparse(live.url).netloc
    outside: list[str] = []

    def only_local(route: Any) -> None:
        if urlparse(route.request.url).netloc == local:
            route.continue_()
        else:  # what a machine with no network would see
            outside.append(f"{route.request.resource_type} {route.request.url}")
            route.abort()

    page.route("**/*", only_local)
    page.goto(f"{live.url}{page_path}")
    page.get_by_text("/v1/uploads", exact=False).first.wait_for(timeout=30_000)
    if page_path == "/docs":  # Swagger UI: every operation and the Authorize button
        assert page.locator(".opblock").count() >= 10
        assert page.locator("button.authorize").count() == 1
    # Nothing the page needs comes from outside (ReDoc's bundle links its "powered by" logo
    # image from its CDN: cosmetic, the page works without it).
    assert [u for u in outside if not u.startswith("image ")] == []
    page.close()
