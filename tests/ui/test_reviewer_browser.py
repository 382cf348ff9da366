"""Browser test: Debian chromium (Playwright) signs in, reviews three photos with the keyboard,
undoes one decision, and the decisions land in the database and the upload API."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from photosieve.store.models import ReviewDecision
from service_harness import PASSWORD, Live, upload_photos

FILTER = "e => getComputedStyle(e).filter"
DOCS = Path(__file__).resolve().parents[2] / "docs"

pytestmark = pytest.mark.browser


def _publish(screenshot: Path) -> None:
    """Copy a screenshot to docs/ for the README when missing or when asked to refresh it
    (PHOTOSIEVE_UPDATE_SCREENSHOTS=1), so ordinary test runs leave the checkout clean."""
    target = DOCS / screenshot.name
    if DOCS.is_dir() and (not target.exists() or os.environ.get("PHOTOSIEVE_UPDATE_SCREENSHOTS")):
        shutil.copyfile(screenshot, target)


def _eventually(read: Callable[[], object], want: object, seconds: float = 5.0) -> None:
    """Poll `read()` until it returns `want` (the page's CSP forbids Playwright's eval waits)."""
    deadline = time.monotonic() + seconds
    while (got := read()) != want:
        assert time.monotonic() < deadline, f"still {got!r}, wanted {want!r}"
        time.sleep(0.05)


def _selected_upload(page: Any) -> str:
    return str(page.locator(".card.is-selected").get_attribute("data-upload-id"))


def _wait_verdict(page: Any, upload_id: str, label: str) -> None:
    page.wait_for_selector(f'.card[data-upload-id="{upload_id}"][data-decision="{label}"]')


def test_review_three_photos_with_the_keyboard(browser: Any, live: Live, tmp_path: Path) -> None:
    first, second, third = live.upload_ids
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    page.set_default_timeout(15_000)
    problems: list[str] = []  # script errors and CSP violations
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("requestfailed", lambda request: problems.append(f"failed: {request.url}"))
    page.on(
        "response",
        lambda r: problems.append(f"{r.status}: {r.url}") if r.status >= 400 else None,
    )

    # Anonymous visitors are sent to the sign-in page; signing in returns to the queue.
    page.goto(f"{live.url}/review")
    assert "/login" in page.url
    page.fill("#username", "rita")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live.url}/review")
    expect(page.locator(".card")).to_have_count(3)

    # Oldest first; the first card is selected, every photo starts blurred.
    cards = page.locator(".card")
    assert [cards.nth(i).get_attribute("data-upload-id") for i in range(3)] == live.upload_ids
    assert _selected_upload(page) == first
    filters = page.eval_on_selector_all(
        ".card img", "els => els.map(e => getComputedStyle(e).filter)"
    )
    assert all("blur" in f for f in filters), filters
    assert page.locator(".card .badge").first.inner_text() == "Model"
    assert "score" in page.locator(".card .score").first.inner_text()

    # J/K move the selection; a click reveals a photo.
    page.keyboard.press("j")
    assert _selected_upload(page) == second
    page.keyboard.press("k")
    assert _selected_upload(page) == first
    page.locator(".card .photo").first.click()
    assert page.locator(".card .photo").first.get_attribute("aria-pressed") == "true"
    _eventually(
        lambda: page.eval_on_selector(".card img", "e => getComputedStyle(e).filter"), "none"
    )

    # R toggles the selected photo; press-and-hold peeks only while held.
    page.keyboard.press("r")
    assert page.locator(".card .photo").first.get_attribute("aria-pressed") == "false"
    third_photo = page.locator(f'.card[data-upload-id="{third}"] .photo')
    box = third_photo.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    _eventually(lambda: "is-peeking" in str(third_photo.get_attribute("class")), True)
    page.mouse.up()
    assert "is-peeking" not in str(third_photo.get_attribute("class"))
    assert third_photo.get_attribute("aria-pressed") == "false"  # a peek is not a toggle
    assert _selected_upload(page) == third  # pointing at a card selects it
    page.keyboard.press("k")
    page.keyboard.press("k")
    page.keyboard.press("r")
    assert page.locator(".card .photo").first.get_attribute("aria-pressed") == "true"

    # O marks the first offensive and moves on; A marks the second OK; U undoes that.
    page.keyboard.press("o")
    _wait_verdict(page, first, "offensive")
    assert _selected_upload(page) == second
    page.keyboard.press("a")
    _wait_verdict(page, second, "ok")
    assert _selected_upload(page) == third
    page.keyboard.press("u")
    page.wait_for_selector(f'.card[data-upload-id="{second}"]:not(.is-decided)')
    assert _selected_upload(page) == second
    page.keyboard.press("j")
    page.keyboard.press("o")
    _wait_verdict(page, third, "offensive")
    assert _selected_upload(page) == second  # the one undecided photo left
    assert page.inner_text("#count-left") == "1"
    page.locator(f'.card[data-upload-id="{second}"] .photo').click()
    _eventually(
        lambda: page.eval_on_selector(f'.card[data-upload-id="{second}"] img', FILTER),
        "none",
    )
    assert page.locator(f'.card[data-upload-id="{second}"] .btn-undo').is_hidden()
    screenshot = tmp_path / "reviewer-ui.png"
    page.screenshot(path=str(screenshot), full_page=False)
    page.keyboard.press("a")
    _wait_verdict(page, second, "ok")
    page.wait_for_selector("#empty:not([hidden])")  # batch done, next claim found nothing

    # A new upload arrives: the next claim brings it in.
    with httpx.Client(base_url=live.url, timeout=30) as client:
        (fourth,) = upload_photos(client, live.api_key, photos=[(4, "circle")])
    page.click("#check-now")
    expect(page.locator(".card")).to_have_count(1)
    assert _selected_upload(page) == fourth

    # The decisions landed: one live decision per photo, the undone one kept as history.
    with live.app.state.sessions() as session:
        rows = session.scalars(select(ReviewDecision).order_by(ReviewDecision.id)).all()
    live_labels = {r.upload_id: r.label for r in rows if not r.undone}
    assert live_labels == {first: "offensive", second: "ok", third: "offensive"}
    assert [(r.upload_id, r.label) for r in rows if r.undone] == [(second, "ok")]
    headers = {"Authorization": f"Bearer {live.api_key}"}
    with httpx.Client(base_url=live.url, headers=headers) as client:
        decisions = [client.get(f"/v1/uploads/{u}").json() for u in live.upload_ids]
    assert [d["decision"] for d in decisions] == ["removed", "approved", "removed"]
    assert all(d["final"] and d["reason"] == "reviewer" for d in decisions)

    assert problems == []

    # History lists the four decisions (one undone).
    page.goto(f"{live.url}/history")
    assert page.locator("#history tbody tr").count() == 4
    assert page.locator("#history tbody tr.is-undone").count() == 1

    assert screenshot.stat().st_size > 10_000
    _publish(screenshot)


def test_admin_page_shows_todays_numbers(browser: Any, live: Live, tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    page.set_default_timeout(15_000)
    page.goto(f"{live.url}/login")
    page.fill("#username", "ada")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live.url}/review")
    expect(page.locator(".card")).to_have_count(3)
    page.keyboard.press("o")
    _wait_verdict(page, live.upload_ids[0], "offensive")
    page.keyboard.press("a")
    _wait_verdict(page, live.upload_ids[1], "ok")
    page.click("nav >> text=Admin")
    page.wait_for_url(f"{live.url}/admin")
    assert page.inner_text("#queue-total") == "1"
    assert "model band\t1" in page.inner_text("#queue-depth")
    uploads = page.inner_text("#uploads-today")  # today's uploads by their current status
    assert all(f"{status}\t1" in uploads for status in ("approved", "pending review", "removed"))
    decisions = page.inner_text("#decisions-today")
    assert "Offensive\t1" in decisions and "OK\t1" in decisions
    shot = tmp_path / "reviewer-ui-admin.png"
    page.screenshot(path=str(shot))
    _publish(shot)
