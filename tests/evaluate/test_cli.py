"""`photosieve calibrate / evaluate / report` end to end on drawn photos and a real tiny bundle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from drawing import draw_photo
from photosieve.bundle import ModelBundle
from photosieve.cli import app
from photosieve.records import Decision

# (split, label, source, count): positives are circles, ok photos rectangles.
PLAN = [
    ("train", "offensive", "primary", 8), ("train", "ok", "primary", 8),
    ("calibration", "offensive", "primary", 20), ("calibration", "ok", "primary", 20),
    ("calibration", "offensive", "external:icons", 3),  # must never be used to calibrate
    ("test", "offensive", "primary", 10), ("test", "ok", "primary", 10),
]  # fmt: skip


@pytest.fixture(scope="module")
def setup(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, Path, Path]:
    from photosieve.learn.head import LogisticHead
    from photosieve.vision.embed import Embedder, embed_files

    workdir = tmp_path_factory.getbasetemp() / "photosieve-vision-work"
    root = tmp_path_factory.mktemp("cli")
    rows, seed = [], 0
    for split, label, source, count in PLAN:
        for _ in range(count):
            seed += 1
            shape = "circle" if label == "offensive" else "rectangle"
            path = root / f"{seed}.jpg"
            image = draw_photo(seed, (96, 96), shape=shape)
            image.save(path, "JPEG", quality=90)
            rows.append({"path": str(path), "label": label, "source": source, "split": split,
                         "origin": f"{source}/{shape}"})  # fmt: skip
    manifest = root / "split.csv"
    frame = pd.DataFrame(rows)
    frame.to_csv(manifest, index=False)
    train = frame[frame["split"] == "train"]
    X = embed_files([Path(p) for p in train["path"]], workdir=workdir, progress=False)
    head = LogisticHead(C=1.0).fit(X, (train["label"] == "offensive").to_numpy().astype(int))
    config = Embedder(workdir=workdir, threads=1).config
    bundle = root / "bundle"
    ModelBundle(head, backbone_id=config.id, preprocess=config.preprocess).save(bundle)
    return manifest, bundle, workdir


def _run(args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(app, args)
    if result.exception and not isinstance(result.exception, SystemExit):
        import traceback

        traceback.print_exception(result.exception)
    return result.exit_code, result.output + (str(result.exception) if result.exception else "")


def test_calibrate_refuses_without_enough_positives(setup: tuple[Path, Path, Path]) -> None:
    manifest, bundle, workdir = setup
    code, out = _run(["calibrate", str(bundle), str(manifest), "--workdir", str(workdir)])
    assert code != 0
    assert "has 20 offensive photos" in out and "add 279 more" in out
    assert ModelBundle.load(bundle).policy is None  # nothing written on refusal


def test_calibrate_evaluate_report(setup: tuple[Path, Path, Path], tmp_path: Path) -> None:
    manifest, bundle, workdir = setup
    code, out = _run([
        "calibrate", str(bundle), str(manifest), "--target-recall", "0.9", "--confidence", "0.8",
        "--workdir", str(workdir),
    ])  # fmt: skip
    assert code == 0, out
    policy = ModelBundle.load(bundle).policy
    assert policy is not None and policy.target_recall == 0.9
    recall = policy.evidence["recall"]
    assert recall["n_positives"] == 20  # primary calibration positives only, not external
    assert "calibration" in policy.evidence["calibration_source"]
    assert recall["recall_lower_bound"] >= 0.9
    assert policy.decide(0.0) is Decision.APPROVE

    json_out = tmp_path / "eval.json"
    code, out = _run(["evaluate", str(bundle), str(manifest), "--json", str(json_out),
                      "--workdir", str(workdir)])  # fmt: skip
    assert code == 0, out
    result = json.loads(json_out.read_text())
    assert result["overall"]["n"] == 20 and result["overall"]["n_offensive"] == 10
    assert {r["origin"] for r in result["by_group"]["origin"]} == {
        "primary/circle", "primary/rectangle",
    }  # fmt: skip
    assert 0.0 <= result["overall"]["review_rate_at_prevalence"] <= 1.0

    report = tmp_path / "report.html"
    code, out = _run(["report", str(bundle), str(manifest), "--out", str(report),
                      "--workdir", str(workdir)])  # fmt: skip
    assert code == 0, out
    page = report.read_text()
    assert page.count("data:image/png;base64,") == 3 and "Operating policy" in page
    assert "No diagnosis available" not in page and "variance" in page
    assert np.isfinite(result["overall"]["recall"])
