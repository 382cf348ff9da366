"""The main job end to end: `photosieve demo` builds a certified bundle from labelled photos.

Runs the real pipeline (ingest → split → train → calibrate → evaluate → report) as the README's
`make run` does, on drawn photos, without starting the server; a second run skips every step.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from drawing import labelled_folder
from photosieve.cli import app
from photosieve.vision.backbone import backbone_config


@pytest.mark.slow
def test_demo_builds_a_certified_bundle_then_skips_done_steps(tmp_path: Path) -> None:
    photos = labelled_folder(tmp_path / "photos", offensive=60, ok=140)
    work = tmp_path / "work"
    args = ["demo", "--data", str(photos), "--workdir", str(work), "--no-serve"]
    args += ["--target-recall", "0.9"]  # 60 positives can certify 90%, not 99%

    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    bundle = json.loads((work / "bundle" / "bundle.json").read_text())
    policy = bundle["policy"]
    assert policy["target_recall"] == 0.9 and 0.0 < policy["approve_below"] <= 1.0
    assert policy["evidence"]["recall"]["recall_lower_bound"] >= 0.9
    split = json.loads((work / "data" / "split.json").read_text())
    assert bundle["data_fingerprint"] == split["fingerprint"]
    assert bundle["backbone_id"] == backbone_config("efficientnet_lite1_avgmax").id  # the default
    assert (work / "report.html").stat().st_size > 10_000

    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    for step in ("ingest", "split", "train", "calibrate"):
        assert f"photosieve {step} " in again.output
    assert again.output.count("(skipped:") == 4

    # The bundle left here was built on the default backbone: asking for another one must not
    # silently reuse it (the skipped train step would serve the old model).
    other = CliRunner().invoke(app, [*args, "--backbone", "efficientnet_lite2_224_avgmax"])
    assert other.exit_code != 0
    assert "efficientnet_lite2_224_avgmax" in other.output and "another --workdir" in other.output


def test_demo_refuses_fine_tuning_settings_train_would_refuse_before_any_work(
    tmp_path: Path,
) -> None:
    work = tmp_path / "work"
    args = ["demo", "--data", str(tmp_path / "none"), "--workdir", str(work), "--no-serve"]
    cascade = CliRunner().invoke(app, [*args, "--cascade", "--finetune-epochs", "2"])
    assert cascade.exit_code == 2 and "build a tuned cascade with" in cascade.output
    lite2 = ["--backbone", "efficientnet_lite2_224_avgmax", "--finetune-epochs", "2"]
    other = CliRunner().invoke(app, [*args, *lite2])
    assert other.exit_code == 2 and "fine-tuning starts from" in other.output
    assert not (work / "data").exists()


def test_a_bundle_is_reused_only_if_tuned_or_frozen_as_asked(tmp_path: Path) -> None:
    """`--finetune-epochs` must not reuse a frozen bundle left in the workdir, nor a plain run a
    tuned one (the skipped train step would serve the other model)."""
    from typer import BadParameter

    from photosieve.cli.demo import _check_bundle_backbone
    from photosieve.vision.backbone import backbone_config

    meta = tmp_path / "bundle.json"
    base = "efficientnet_lite0_avgmax"
    meta.write_text(json.dumps({"backbone_id": backbone_config(base).id}))
    _check_bundle_backbone(meta, base)
    with pytest.raises(BadParameter, match="another --workdir"):
        _check_bundle_backbone(meta, base, tuned=True)
    meta.write_text(json.dumps({"backbone_id": "efficientnet_lite0_avgmax_tuned-0123456789ab"}))
    _check_bundle_backbone(meta, base, tuned=True)
    with pytest.raises(BadParameter, match="another --workdir"):
        _check_bundle_backbone(meta, base)
