"""A cascade whose first stage is a fine-tuned backbone (`train --finetune-epochs N
--refine-backbone B`): the tuned Lite0 scores every photo, the second backbone only those past
the gate, and every serving path — a fresh process's Scorer, the torch-free batch workers, the
service — gives the composite score the pipeline certified."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from drawing import drawn_split_manifest
from photosieve.bundle import ModelBundle
from photosieve.config import CertifyConfig, TrainConfig
from photosieve.learn.ensemble import EnsembleHead
from photosieve.pipeline import calibrate_bundle, train_bundle
from photosieve.scoring import Scorer, backbone_for, score_rows
from photosieve.vision import backbone as registry
from photosieve.vision.backbone import backbone_config
from photosieve.vision.embed import embed_files
from photosieve.vision.tuned import is_tuned
from service_harness import backlog_scores, served_uploads

pytestmark = pytest.mark.usefixtures("restore_backbones")

# the frozen Lite0 as the second look: it decodes like the tuned one and keeps the test cheap
SECOND = "efficientnet_lite0_avgmax"
SPLITS = ("train",) * 4 + ("validation", "validation", "calibration", "calibration", "test")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tuned-cascade-work")


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """72 drawn JPEGs (circle = offensive, half of them) over the four splits."""
    return drawn_split_manifest(
        tmp_path_factory.mktemp("tuned-cascade-photos"), 72, SPLITS,
        offensive=lambda i: i % 2 == 0, size=lambda i: (170 + i % 4 * 25, 150),
    )  # fmt: skip


@pytest.fixture(scope="module")
def cascade(manifest: Path, workdir: Path) -> ModelBundle:
    torch.set_num_threads(2)
    cfg = TrainConfig(hidden=(16,), epochs=3, ensemble=1, batch_size=32, lr=1e-3, dropout=0.1,
                      finetune_epochs=1, refine_backbone=SECOND, refine_stop=0.2)  # fmt: skip
    bundle = train_bundle(manifest, cfg, workdir=workdir, progress=False).bundle
    certify = CertifyConfig(target_recall=0.8, confidence=0.8)
    return calibrate_bundle(bundle, manifest, certify, workdir=workdir, progress=False)


def test_the_first_stage_is_the_tuned_network_and_the_second_looks_past_its_gate(
    cascade: ModelBundle, manifest: Path, workdir: Path
) -> None:
    refiner = cascade.refiner
    assert refiner is not None and cascade.policy is not None
    assert is_tuned(cascade.backbone_id) and cascade.backbone_weights is not None
    assert refiner.backbone_id == backbone_config(SECOND).id
    assert isinstance(cascade.head, EnsembleHead)  # the default "both" head
    frame = pd.read_csv(manifest)
    paths = [Path(p) for p in frame["path"]]
    X = embed_files(paths, workdir=workdir, backbone=backbone_for(cascade.backbone_id),
                    progress=False)  # fmt: skip
    X2 = embed_files(paths, workdir=workdir, backbone=SECOND, progress=False)
    assert np.abs(X - X2).max() > 1e-2  # two different networks
    first = cascade.first_scores(X)
    val = (frame["split"] == "validation").to_numpy()
    pos = (frame["label"] == "offensive").to_numpy()
    by_share, by_stop = np.quantile(first[val & ~pos], 0.6), np.quantile(first[val & pos], 0.2)
    assert refiner.gate == pytest.approx(float(min(by_share, by_stop)))
    composite = cascade.score_embeddings(X, lambda rows: X2[rows])
    passed = first >= refiner.gate
    assert 0 < passed.sum() < len(first)  # both sides of the gate
    assert (composite[~passed] == 0).all()
    np.testing.assert_allclose(score_rows(cascade, frame, workdir=workdir, progress=False),
                               composite, rtol=0, atol=1e-6)  # fmt: skip


def test_a_fresh_process_the_workers_and_the_service_serve_the_tuned_cascade(
    cascade: ModelBundle, manifest: Path, workdir: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("PHOTOSIEVE_WORKDIR", str(workdir))
    frame = pd.read_csv(manifest)
    paths = [Path(p) for p in frame["path"]]
    want = score_rows(cascade, frame, workdir=workdir, progress=False)
    saved = cascade.save(tmp_path / "bundle")
    monkeypatch.delitem(registry._REGISTRY, backbone_for(cascade.backbone_id))
    loaded = ModelBundle.load(saved)  # registers the tuned weights the bundle carries
    by_files = np.array([s.score for s in Scorer(loaded).score_paths(paths)])
    np.testing.assert_allclose(by_files, want, rtol=0, atol=1e-5)
    got = backlog_scores(loaded, manifest.parent, tmp_path / "batch", list(frame["path"]))
    np.testing.assert_allclose(got["score"].to_numpy(), want, rtol=0, atol=1e-5)
    # an upload past the gate with the least saturated score (a frozen first stage would move it)
    past = [i for i in range(len(frame)) if want[i] > 0]
    i = min(past, key=lambda i: abs(np.log(want[i] / (1 - want[i]))))
    (body,) = served_uploads(loaded, tmp_path / "service", [paths[i]])
    assert body["score"] == pytest.approx(want[i], abs=1e-5)
