"""Browser test: an appeal's reason from the user is shown on its queue card, as text only."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from service_harness import PASSWORD, Live

pytestmark = pytest.mark.browser
REASON = "It is my cat <img src=x onerror=\"document.title='pwned'\">\nhonestly"


def _sign_in(client: httpx.Client, name: str) -> None:
    response = client.post("/v1/auth/login", json={"username": name, "password": PASSWORD})
    assert response.status_code == 200, response.text
    client.headers["X-CSRF-Token"] = response.json()["csrf_token"]


def test_appeal_reason_on_the_card(browser: Any, live: Live) -> None:
    removed = live.upload_ids[0]
    with httpx.Client(base_url=live.url, timeout=30) as ada:  # ada removes the first photo
        _sign_in(ada, "ada")
        items = ada.post("/v1/review/claim", json={"limit": 1}).json()["items"]
        assert [i["upload_id"] for i in items] == [removed]
        path = f"/v1/review/items/{items[0]['id']}/decision"
        assert ada.post(path, json={"label": "offensive"}).status_code == 200
    appeal = httpx.post(
        f"{live.url}/v1/uploads/{removed}/appeal",
        json={"reason": REASON},
        headers={"Authorization": f"Bearer {live.api_key}"},
    )
    assert appeal.status_code == 200, appeal.text

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(15_000)
    page.goto(f"{live.url}/login?next=/review")
    page.fill("#username", "rita")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live.url}/review")
    card = page.locator(f'.card[data-upload-id="{removed}"]')
    expect(card).to_have_count(1)
    assert card.locator(".badge").inner_text() == "Appeal"
    said = card.locator(".appeal-reason")
    expect(said).to_be_visible()
    assert '<img src=x onerror="document.title' in said.inner_text()  # shown, not run
    assert said.locator("img").count() == 0
    assert page.title() != "pwned"
    others = page.locator(f".card:not([data-upload-id='{removed}']) .appeal-reason")
    assert all(not others.nth(i).is_visible() for i in range(others.count()))
    page.close()
