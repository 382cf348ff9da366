"""`photosieve train` and `photosieve diagnose` end to end on drawn photos (real embeddings)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from drawing import draw_photo
from photosieve.bundle import ModelBundle
from photosieve.cli import app
from photosieve.records import sha256_file

# (split, photos per class): offensive photos show a circle, ok photos a rectangle.
PLAN = [("train", 12), ("train_dev", 4), ("validation", 6), ("test", 6)]


@pytest.fixture(scope="module")
def split_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("learn-cli")
    rows, seed = [], 0
    for split, count in PLAN:
        for label, shape in (("offensive", "circle"), ("ok", "rectangle")):
            for _ in range(count):
                seed += 1
                path = root / f"{seed}.jpg"
                draw_photo(seed, (96, 96), shape=shape).save(path, "JPEG", quality=90)
                rows.append(
                    {
                        "path": str(path),
                        "label": label,
                        "source": "primary",
                        "sha256": sha256_file(path),
                        "phash": "0" * 16,
                        "group_id": seed,
                        "split": split,
                    }
                )
    manifest = root / "split.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return manifest


def test_train_then_diagnose(
    split_manifest: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # The vision tests' workdir: the ONNX export is made once per test session.
    workdir = tmp_path_factory.getbasetemp() / "photosieve-vision-work"
    out = split_manifest.parent / "bundle"
    runner = CliRunner()
    args = ["train", str(split_manifest), "--out", str(out), "--workdir", str(workdir)]
    args += [
        "--hidden",
        "32",
        "--epochs",
        "20",
        "--lr",
        "3e-3",
        "--ensemble",
        "2",
        "--threads",
        "1",
        "--backbone",  # pinned: 24 training photos are too few to compare backbones on
        "efficientnet_lite0",
        "--no-train-mirror",  # and recipes (the mirror's effect: test_train.py, the bench)
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "validation" in result.output and "operating threshold" in result.output

    bundle = ModelBundle.load(out)
    assert bundle.train_config["ensemble"] == 2 and bundle.train_config["hidden"] == [32]
    assert bundle.train_config["train_mirror"] is False
    assert bundle.metrics["splits"]["test"]["average_precision"] > 0.9
    assert bundle.backbone_id.startswith("efficientnet_lite0-")

    result = runner.invoke(app, ["diagnose", str(out), "--workdir", str(workdir)])
    assert result.exit_code == 0, result.output
    assert "avoidable bias" in result.output and "data mismatch" in result.output


def test_train_rejects_bad_hidden(split_manifest: Path) -> None:
    result = CliRunner().invoke(app, ["train", str(split_manifest), "--hidden", "a,b"])
    assert result.exit_code != 0
    assert "comma-separated" in result.output


@pytest.mark.usefixtures("restore_backbones")
def test_train_fine_tunes_the_backbone_when_asked(split_manifest: Path, tmp_path: Path) -> None:
    """`--finetune-epochs` tunes Lite0 first; the bundle carries and names the tuned weights."""
    out = tmp_path / "bundle"
    args = ["train", str(split_manifest), "--out", str(out), "--workdir", str(tmp_path)]
    args += ["--hidden", "16", "--epochs", "3", "--ensemble", "1", "--finetune-epochs", "1"]
    result = CliRunner().invoke(app, args)  # the default head: "both"
    assert result.exit_code == 0, result.output
    assert "fine-tune epoch 1/1" in result.output
    bundle = ModelBundle.load(out)
    assert bundle.backbone_id.startswith("efficientnet_lite0_avgmax_tuned-")
    assert bundle.train_config["finetune_epochs"] == 1
    # "both": a head fitted afresh (its own 3 epochs) beside the one tuned with the backbone (1)
    assert bundle.train_config["finetune_head"] == "both"
    refit, tuned = bundle.head.members_
    assert (refit.epochs, tuned.epochs) == (3, 1)
    X = np.random.default_rng(0).normal(size=(4, 2560)).astype(np.float32)
    mean = (refit.decision_function(X) + tuned.decision_function(X)) / 2
    np.testing.assert_allclose(bundle.head.decision_function(X), mean, rtol=1e-6)
    assert (out / "backbone.pt").is_file() and list((tmp_path / "backbones").glob("*.pt"))
    refused = CliRunner().invoke(app, ["train", str(split_manifest), "--finetune-epochs", "1",
                                       "--backbone", "efficientnet_lite0"])  # fmt: skip
    assert refused.exit_code == 2 and "fine-tuning starts from" in refused.output
    unknown = CliRunner().invoke(app, [*args, "--finetune-head", "best"])
    assert unknown.exit_code == 2 and "finetune_head must be" in unknown.output
