"""Retrain's data rules without training: one row per photo (a reviewer's label wins), and a
retrain with nothing to learn from is refused in one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


CASCADE = {
    "backbone": "efficientnet_lite0_avgmax_d384",
    "refine_backbone": "efficientnet_lite0_384_avgmax",
    "refine_share": 0.3,
    "refine_stop": 0.01,
}
TUNED = {"backbone": "efficientnet_lite0_avgmax", "finetune_epochs": 12, "finetune_head": "both"}


@pytest.mark.parametrize("recipe", [CASCADE, TUNED], ids=["cascade", "tuned"])
def test_a_retrain_keeps_the_live_models_backbones(tmp_path: Path, recipe: dict[str, Any]) -> None:
    """A live cascade is retrained as a cascade, a fine-tuned model tuned again with the same
    epochs and head (and no live model: the defaults)."""
    import numpy as np

    from photosieve.bundle import ModelBundle
    from photosieve.config import CASCADE_BACKBONES, TrainConfig
    from photosieve.feedback.retrain import live_recipe
    from photosieve.learn.head import LogisticHead
    from photosieve.store import registry
    from photosieve.store.db import make_engine, make_sessionmaker, migrate
    from photosieve.store.models import ModelStatus
    from photosieve.vision.preprocess import PreprocessConfig

    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    migrate(engine)
    rng = np.random.default_rng(0)
    head = LogisticHead().fit(rng.normal(size=(20, 4)), np.arange(20) % 2)
    assert (CASCADE["backbone"], CASCADE["refine_backbone"]) == CASCADE_BACKBONES
    TrainConfig(**recipe)  # a recipe train accepts
    bundle = ModelBundle(head, backbone_id="x", preprocess=PreprocessConfig(),
                         train_config={"epochs": 3, **recipe})  # fmt: skip
    path = bundle.save(tmp_path / "bundle")
    with make_sessionmaker(engine)() as session:
        assert live_recipe(session) == {}
        registry.register(session, registry.NewModel(bundle.version, str(path)), actor="test",
                          status=ModelStatus.LIVE)  # fmt: skip
        session.commit()
        assert live_recipe(session) == recipe
    engine.dispose()
