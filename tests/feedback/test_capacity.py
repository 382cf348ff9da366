"""The team forecast: reviewers from volumes and rates, the certificate's sample-size arithmetic,
and `photosieve capacity` printing every assumption with where it came from."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from photosieve.cli import app
from photosieve.feedback.capacity import (
    Workload,
    certified_review_curve,
    misses_allowed,
    reviewers_needed,
)


def test_misses_allowed_matches_the_exact_table() -> None:
    # review-rate-facts.md: 99%/95% needs 299 (k=0), 473 (1), 628 (2), 1,049 (5)
    assert [misses_allowed(n, 0.99, 0.95) for n in (298, 299, 473, 628, 1049)] == [-1, 0, 1, 2, 5]
    assert misses_allowed(149, 0.98, 0.95) == 0 and misses_allowed(59, 0.95, 0.95) == 0


def test_reviewers_scale_with_users_and_the_items_each_upload_causes() -> None:
    w = Workload(
        uploads_per_user_per_day=0.01, review_share=0.05, remove_share=0.01, audit_rate=0.02,
        appeal_rate=0.5, decisions_per_hour=250, hours_per_day=6,
    )  # fmt: skip
    items = 0.05 + 0.94 * 0.02 + 0.01 * 0.5
    assert w.items_per_upload() == pytest.approx(items)
    rows = reviewers_needed(w, (1_000_000, 100_000_000))
    assert rows[0]["uploads_per_day"] == 10_000
    assert rows[0]["reviewers"] == pytest.approx(10_000 * items / 1_500)
    assert rows[1]["reviewers"] == pytest.approx(100 * rows[0]["reviewers"])


def test_more_labelled_positives_never_make_the_certificate_dearer() -> None:
    rng = np.random.default_rng(0)
    pos, neg = rng.beta(6, 2, 5_000), rng.beta(2, 6, 50_000)
    curve = certified_review_curve(pos, neg, (100, 299, 1_049, 10_000))
    assert curve[0]["review_rate"] is None  # 100 positives cannot certify 99% at all
    rates = [c["review_rate"] for c in curve[1:]]
    assert rates == sorted(rates, reverse=True) and rates[-1] < rates[0]
    assert [c["misses_allowed"] for c in curve[1:3]] == [0, 5]


def test_capacity_command_names_every_assumption(tmp_path: Path) -> None:
    out = tmp_path / "capacity.json"
    args = ["capacity", "--workdir", str(tmp_path / "empty"), "--json", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    payload = json.loads(out.read_text())
    assert [r["users"] for r in payload["forecast"]] == [1e6, 1e7, 1e8]
    assert payload["origin"]["decisions_per_hour"] == "assumed (default)"
    assert payload["origin"]["uploads_per_user_per_day"] == "assumed (option)"
    assert "Reviewers needed" in result.output and "100,000,000" in result.output


def test_capacity_takes_the_review_share_as_a_named_assumption(tmp_path: Path) -> None:
    """Without a bundle at hand (the README's benchmark figures) the share is an option."""
    args = ["capacity", "--workdir", str(tmp_path), "--review-share", "0.1597", "--json",
            str(tmp_path / "f.json")]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    payload = json.loads((tmp_path / "f.json").read_text())
    assert payload["origin"]["review_share"] == "assumed (option)"
    assert [round(r["reviewers"], 1) for r in payload["forecast"]] == [0.9, 9.3, 93.4]
