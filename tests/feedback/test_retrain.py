"""Retrain's data rules without training: one row per photo (a reviewer's label wins), and a
retrain with nothing to learn from is refused in one line."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from photosieve.cli import app as cli_app
from photosieve.feedback.retrain import merged_photos


def _rows(*rows: tuple[str, str, str]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "path": f"/p/{sha}.jpg",
                "label": label,
                "source": source,
                "sha256": sha,
                "phash": "0" * 16,
            }
            for sha, label, source in rows
        ]
    )


def test_a_reviewers_label_wins_over_the_earlier_one() -> None:
    base = _rows(("a", "ok", "primary"), ("b", "offensive", "primary"))
    feedback = _rows(("a", "offensive", "primary"), ("c", "ok", "external:selected"))
    merged = merged_photos(feedback, base).set_index("sha256")
    assert len(merged) == 3
    assert merged.loc["a", "label"] == "offensive"
    assert merged.loc["c", "source"] == "external:selected"
    assert len(merged_photos(None, base)) == 2


def test_retrain_with_nothing_to_learn_from_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PHOTOSIEVE_WORKDIR", str(tmp_path))
    result = CliRunner().invoke(cli_app, ["retrain"])
    assert result.exit_code == 1
    assert "nothing to train on" in result.output
    listing = CliRunner().invoke(cli_app, ["model", "list"])
    assert listing.exit_code == 0 and "model registry" in listing.output
    rollback = CliRunner().invoke(cli_app, ["model", "rollback"])
    assert rollback.exit_code == 1 and "no earlier live version" in rollback.output
