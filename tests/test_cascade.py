"""A two-stage cascade bundle (`bundle.Refiner`) on real drawn photos: trained with its gate
chosen on validation, certified on the composite score, saved and loaded, and scored alike from
bytes, decoded images, files and manifest rows (its second backbone only past the gate); and a
cascade whose first stage is a fine-tuned backbone (`train --finetune-epochs N --refine-backbone
B`), served alike by a fresh process, the torch-free batch workers and the service."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from drawing import drawn_split_manifest
from photosieve.bundle import ModelBundle, cascade_scores
from photosieve.config import CertifyConfig, TrainConfig
from photosieve.learn.ensemble import EnsembleHead
from photosieve.pipeline import calibrate_bundle, train_bundle
from photosieve.scoring import Scorer, backbone_for, score_rows
from photosieve.vision import backbone as registry
from photosieve.vision.backbone import backbone_config
from photosieve.vision.embed import Embedder, embed_files
from photosieve.vision.preprocess import load_image
from photosieve.vision.tuned import is_tuned
from service_harness import backlog_scores, served_uploads

pytestmark = pytest.mark.usefixtures("restore_backbones")  # the tuned cascade registers one

FIRST, SECOND = "efficientnet_lite0_avgmax_d384", "efficientnet_lite0_384_avgmax"
TUNED_SECOND = "efficientnet_lite0_avgmax"
SPLITS = ("train",) * 5 + ("validation", "calibration", "calibration", "test", "train")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cascade-work")


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """120 drawn JPEGs (circle = offensive), some big enough that the decoder drafts them."""
    return drawn_split_manifest(
        tmp_path_factory.mktemp("cascade-photos"), 120, SPLITS, offensive=lambda i: i % 3 == 0,
        size=lambda i: (1000, 920) if i % 7 == 0 else (160 + i % 5 * 40, 140), quality=90,
    )  # fmt: skip


@pytest.fixture(scope="module")
def cascade(manifest: Path, workdir: Path) -> ModelBundle:
    return _certified_cascade(manifest, workdir, backbone=FIRST, refine_backbone=SECOND)


def _certified_cascade(manifest: Path, workdir: Path, **settings: Any) -> ModelBundle:
    """A small cascade trained on `manifest` (gate may stop 20% of validation positives) and
    certified at 80% recall, 80% confidence."""
    cfg = TrainConfig(hidden=(16,), epochs=3, ensemble=1, batch_size=32, lr=1e-3, dropout=0.1,
                      refine_stop=0.2, **settings)  # fmt: skip
    bundle = train_bundle(manifest, cfg, workdir=workdir, progress=False).bundle
    certify = CertifyConfig(target_recall=0.8, confidence=0.8)
    return calibrate_bundle(bundle, manifest, certify, workdir=workdir, progress=False)


def test_the_gate_is_chosen_on_validation_and_scores_below_it_are_zero(
    cascade: ModelBundle, manifest: Path, workdir: Path
) -> None:
    refiner = cascade.refiner
    assert refiner is not None and cascade.policy is not None
    assert refiner.backbone_id == backbone_config(SECOND).id
    assert refiner.preprocess.input_size == 384 and cascade.preprocess.decode_size == 384
    frame = pd.read_csv(manifest)
    paths = [Path(p) for p in frame["path"]]
    X = embed_files(paths, workdir=workdir, backbone=FIRST, progress=False)
    first = cascade.first_scores(X)
    val = frame["split"] == "validation"
    val_pos = first[val & (frame["label"] == "offensive")]
    val_neg = first[val & (frame["label"] == "ok")]
    # the lower of: passing 40% of validation negatives on, stopping 20% of its positives
    by_share, by_stop = np.quantile(val_neg, 0.6), np.quantile(val_pos, 0.2)
    assert refiner.gate == pytest.approx(float(min(by_share, by_stop)))
    assert refiner.gate_rule["gate_by_share"] == pytest.approx(float(by_share))
    assert refiner.gate_rule["validation_positives"] == len(val_pos)
    asked: list[int] = []

    def second(rows: np.ndarray) -> np.ndarray:
        asked.extend(int(r) for r in rows)
        return embed_files([paths[r] for r in rows], workdir=workdir, backbone=SECOND,
                           progress=False)  # fmt: skip

    composite = cascade.score_embeddings(X, second)
    passed = first >= refiner.gate
    assert 0 < passed.sum() < len(first)  # both branches are exercised
    assert sorted(asked) == np.flatnonzero(passed).tolist()  # the second look only past the gate
    assert (composite[~passed] == 0.0).all() and (composite[passed] > 0).all()
    # the policy was certified on these composite scores (the calibration rows')
    np.testing.assert_allclose(score_rows(cascade, frame, workdir=workdir, progress=False),
                               composite, rtol=0, atol=1e-6)  # fmt: skip
    cal = ((frame["split"] == "calibration") & (frame["label"] == "offensive")).to_numpy()
    assert cascade.policy.evidence["cascade"]["positives_stopped"] == int((cal & ~passed).sum())
    with pytest.raises(ValueError, match="two-stage cascade"):
        cascade.score_embeddings(X)  # never a first-stage score where the policy wants another


def test_a_saved_cascade_loads_and_scores_alike_from_every_path(
    cascade: ModelBundle, manifest: Path, workdir: Path, tmp_path: Path
) -> None:
    saved = cascade.save(tmp_path / "bundle")
    assert (saved / "refiner.pt").is_file()
    # format 2: a photosieve that predates cascades refuses it rather than score stage 1 alone
    assert json.loads((saved / "bundle.json").read_text())["format"] == 2
    loaded = ModelBundle.load(saved)
    assert loaded.refiner is not None and loaded.refiner.gate == cascade.refiner.gate  # type: ignore[union-attr]
    single = dataclasses.replace(cascade, refiner=None, version="").save(tmp_path / "single")
    assert ModelBundle.load(single).version != loaded.version  # the second head is in the version
    assert json.loads((single / "bundle.json").read_text())["format"] == 1
    scorer = Scorer(loaded, Embedder(FIRST, workdir, threads=1))
    assert scorer.refine_embedder is not None
    frame = pd.read_csv(manifest)
    paths = [Path(p) for p in frame["path"]]
    by_rows = score_rows(loaded, frame, workdir=workdir, progress=False)
    by_files = np.array([s.score for s in scorer.score_paths(paths)])
    np.testing.assert_allclose(by_files, by_rows, rtol=0, atol=1e-6)
    picks = [int(np.argmax(by_rows)), int(np.argmin(by_rows))] + [i for i in (0, 7) if i < 120]
    for i in picks:  # above and below the gate, drafted (0, 7: 1000 px) and not
        data = paths[i].read_bytes()
        from_bytes = scorer.score_bytes(data)
        image = load_image(data, draft_size=loaded.preprocess.decode_size)
        from_image = scorer.score_images([image])[0]
        assert from_bytes.score == pytest.approx(by_rows[i], abs=1e-5)
        assert from_image.score == pytest.approx(by_rows[i], abs=1e-5)
        assert from_bytes.decision == loaded.policy.decide(from_bytes.score)  # type: ignore[union-attr]


def test_stages_that_decode_for_different_sizes_are_refused(
    cascade: ModelBundle, manifest: Path, workdir: Path
) -> None:
    with pytest.raises(ValueError, match="decode photos for the same size"):
        train_bundle(manifest, TrainConfig(refine_backbone=SECOND), workdir=workdir,
                     progress=False)  # fmt: skip
    tuned = TrainConfig(refine_backbone=SECOND, finetune_epochs=1)  # refused before any tuning
    with pytest.raises(ValueError, match="a tuned first stage decodes at 224 px"):
        train_bundle(manifest, tuned, workdir=workdir, progress=False)
    plain = backbone_config("efficientnet_lite0_avgmax")
    with pytest.raises(ValueError, match="decode photos for the same size"):
        dataclasses.replace(cascade, backbone_id=plain.id, preprocess=plain.preprocess)


def test_composite_scores_follow_the_second_head_past_the_gate(cascade: ModelBundle) -> None:
    refiner = cascade.refiner
    assert refiner is not None
    rng = np.random.default_rng(0)
    X, X2 = rng.normal(size=(6, 2560)), rng.normal(size=(6, 2560))
    first = np.array([0.0, 1.0, refiner.gate, refiner.gate - 1e-9, 0.5, 1e-6])
    got = cascade_scores(first, refiner, X, lambda rows: X2[rows])
    passed = first >= refiner.gate
    expect = refiner.head.score(np.concatenate([X, X2], axis=1).astype(np.float32))
    np.testing.assert_allclose(got[passed], expect[passed], rtol=1e-2)  # batch-size numerics
    assert (got[~passed] == 0).all()


def test_the_batch_workers_score_a_cascade_as_the_scorer_does(
    cascade: ModelBundle, manifest: Path, workdir: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Torch-free workers run both stages' ONNX graphs (`batch.worker.WorkerRefiner`)."""
    monkeypatch.setenv("PHOTOSIEVE_WORKDIR", str(workdir))
    frame = pd.read_csv(manifest)
    got = backlog_scores(cascade, manifest.parent, tmp_path, list(frame["path"]))
    want = score_rows(cascade, frame, workdir=workdir, progress=False)
    scores = got["score"].to_numpy()
    np.testing.assert_allclose(scores, want, rtol=0, atol=1e-5)
    assert (scores == 0).any() and (scores > 0).any()  # both sides of the gate
    policy = cascade.policy
    assert policy is not None
    # bands as the policy gives them, away from its thresholds (set at calibration photos'
    # own scores, where ONNX's 1e-6 differences from torch may fall either side)
    edges = np.array([policy.approve_below, policy.remove_at or 2.0])
    clear = np.abs(want[:, None] - edges[None, :]).min(axis=1) > 1e-4
    decisions = got["decision"].to_numpy()
    assert clear.sum() > 60
    assert list(decisions[clear]) == [policy.decide(float(s)).value for s in want[clear]]


def test_the_service_scores_an_upload_with_both_stages(
    cascade: ModelBundle, manifest: Path, workdir: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """The live cascade is loaded from its bundle; the upload is decoded once, for 384 px, and
    gets the score `score_rows` gives the same file (a drafted 1000-px photo past the gate)."""
    monkeypatch.setenv("PHOTOSIEVE_WORKDIR", str(workdir))
    frame = pd.read_csv(manifest)
    want = score_rows(cascade, frame, workdir=workdir, progress=False)
    big = [i for i in range(len(frame)) if i % 7 == 0]
    # a drafted photo past the gate whose score is not saturated: another decode would move it
    past = min((i for i in big if want[i] > 0), key=lambda i: abs(np.log(want[i] / (1 - want[i]))))
    stopped = min(range(len(frame)), key=lambda i: want[i])
    assert 1e-4 < want[past] < 1 - 1e-4 and want[stopped] == 0
    bodies = served_uploads(cascade, tmp_path, [Path(frame["path"][i]) for i in (past, stopped)])
    for i, body in zip((past, stopped), bodies, strict=True):
        assert body["score"] == pytest.approx(want[i], abs=1e-5)
        assert body["model_version"] == cascade.version


def test_the_report_evaluates_the_cascade_and_names_its_gate(
    cascade: ModelBundle, manifest: Path, workdir: Path, tmp_path: Path
) -> None:
    from photosieve.evaluate.report import write_report

    saved = cascade.save(tmp_path / "bundle")
    page = write_report(saved, manifest, tmp_path / "report.html", workdir=workdir).read_text()
    assert "cascade: gate (first-stage score)" in page
    assert cascade.refiner is not None and cascade.refiner.backbone_id in page


@pytest.fixture(scope="module")
def tuned_cascade(manifest: Path, workdir: Path) -> ModelBundle:
    """The first stage fine-tuned (`train --finetune-epochs 1`), the frozen Lite0 as the second
    look: it decodes like the tuned Lite0 (224 px) and keeps the test cheap."""
    torch.set_num_threads(2)
    return _certified_cascade(manifest, workdir, finetune_epochs=1, refine_backbone=TUNED_SECOND)


def test_a_tuned_first_stage_gates_the_second_look(
    tuned_cascade: ModelBundle, manifest: Path, workdir: Path
) -> None:
    refiner = tuned_cascade.refiner
    assert refiner is not None and tuned_cascade.policy is not None
    assert is_tuned(tuned_cascade.backbone_id) and tuned_cascade.backbone_weights is not None
    assert refiner.backbone_id == backbone_config(TUNED_SECOND).id
    assert isinstance(tuned_cascade.head, EnsembleHead)  # the default "both" head
    frame = pd.read_csv(manifest)
    paths = [Path(p) for p in frame["path"]]
    X = embed_files(paths, workdir=workdir, backbone=backbone_for(tuned_cascade.backbone_id),
                    progress=False)  # fmt: skip
    X2 = embed_files(paths, workdir=workdir, backbone=TUNED_SECOND, progress=False)
    assert np.abs(X - X2).max() > 1e-2  # two different networks
    first = tuned_cascade.first_scores(X)
    val = (frame["split"] == "validation").to_numpy()
    pos = (frame["label"] == "offensive").to_numpy()
    by_share, by_stop = np.quantile(first[val & ~pos], 0.6), np.quantile(first[val & pos], 0.2)
    assert refiner.gate == pytest.approx(float(min(by_share, by_stop)))
    composite = tuned_cascade.score_embeddings(X, lambda rows: X2[rows])
    passed = first >= refiner.gate
    assert 0 < passed.sum() < len(first)  # both sides of the gate
    assert (composite[~passed] == 0).all()
    np.testing.assert_allclose(score_rows(tuned_cascade, frame, workdir=workdir, progress=False),
                               composite, rtol=0, atol=1e-6)  # fmt: skip


def test_a_fresh_process_the_workers_and_the_service_serve_a_tuned_cascade(
    tuned_cascade: ModelBundle, manifest: Path, workdir: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("PHOTOSIEVE_WORKDIR", str(workdir))
    frame = pd.read_csv(manifest)
    paths = [Path(p) for p in frame["path"]]
    want = score_rows(tuned_cascade, frame, workdir=workdir, progress=False)
    saved = tuned_cascade.save(tmp_path / "bundle")
    monkeypatch.delitem(registry._REGISTRY, backbone_for(tuned_cascade.backbone_id))
    loaded = ModelBundle.load(saved)  # registers the tuned weights the bundle carries
    by_files = np.array([s.score for s in Scorer(loaded).score_paths(paths)])
    np.testing.assert_allclose(by_files, want, rtol=0, atol=1e-5)
    got = backlog_scores(loaded, manifest.parent, tmp_path / "batch", list(frame["path"]))
    np.testing.assert_allclose(got["score"].to_numpy(), want, rtol=0, atol=1e-5)
    # an upload past the gate with the least saturated score (a frozen first stage would move it)
    past = [i for i in range(len(frame)) if want[i] > 0]
    i = min(past, key=lambda i: abs(want[i] - 0.5))
    (body,) = served_uploads(loaded, tmp_path / "service", [paths[i]])
    assert body["score"] == pytest.approx(want[i], abs=1e-5)
