"""The HTML report: built from synthetic scores, rendered in headless Chromium."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from photosieve.bundle import ModelBundle
from photosieve.evaluate.metrics import evaluate_policy
from photosieve.evaluate.plots import review_recall_curve
from photosieve.evaluate.report import render_report
from photosieve.policy.certify import certify_policy
from photosieve.vision.preprocess import PreprocessConfig

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip


class _Head:
    def score(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(X)[:, 0]


def _scores(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    labels = rng.random(n) < 0.1
    scores = np.where(labels, rng.beta(6, 1.2, n), rng.beta(0.6, 8, n))
    origin = np.where(rng.random(n) < 0.5, "camera", "scan")
    return scores, labels, origin


def _page() -> tuple[str, float]:
    rng = np.random.default_rng(7)
    cal_s, cal_y, _ = _scores(rng, 5000)
    test_s, test_y, origin = _scores(rng, 3000)
    policy = certify_policy(cal_s, cal_y, target_precision=0.9, source="synthetic calibration")
    model = ModelBundle(
        _Head(), backbone_id="efficientnet_lite0-test", preprocess=PreprocessConfig()
    )
    model = model.with_policy(policy)
    ev = evaluate_policy(
        test_s, test_y, policy, groups={"origin": origin, "source": ["primary"] * 3000}
    )
    curve = review_recall_curve(cal_s, cal_y, test_s, test_y)
    page = render_report(model, ev, test_s, test_y, curve=curve, data_note="synthetic <test>")
    return page, policy.approve_below


def test_report_is_self_contained_and_escaped() -> None:
    page, threshold = _page()
    assert page.count("data:image/png;base64,") == 3
    assert not re.search(r"(src|href)=\"https?://", page)  # nothing fetched from the network
    assert "synthetic &lt;test&gt;" in page  # text is escaped
    assert f"{threshold:.6g}" in page
    assert "By origin" in page and "Training diagnosis" in page


@pytest.mark.browser
def test_report_renders_in_chromium(tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path("/usr/bin/chromium").is_file():
        pytest.skip("no /usr/bin/chromium")
    page_html, _ = _page()
    report = tmp_path / "report.html"
    report.write_text(page_html, encoding="utf-8")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(report.as_uri())
            # Every embedded PNG decoded to a real picture.
            widths = page.eval_on_selector_all("img", "els => els.map(e => e.naturalWidth)")
            assert len(widths) == 3 and min(widths) > 200
            assert "certified" in page.inner_text(".checks")
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()
    assert (tmp_path / "report.png").stat().st_size > 10_000
