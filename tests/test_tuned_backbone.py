"""A fine-tuned backbone through the whole product: `train --finetune-epochs` tunes Lite0 on the
training photos, the bundle carries the tuned weights, and every path — the Scorer from bytes and
files, manifest rows, the torch-free batch workers — serves the tuned network after a load in a
process that has never seen it."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from drawing import drawn_split_manifest
from photosieve.bundle import BACKBONE_FILE, ModelBundle
from photosieve.config import DEFAULT_BACKBONE, CertifyConfig, TrainConfig
from photosieve.pipeline import calibrate_bundle, train_bundle
from photosieve.scoring import Scorer, backbone_for, score_rows
from photosieve.vision import backbone as registry
from photosieve.vision.embed import embed_files
from photosieve.vision.tuned import BASE, is_tuned, register_tuned
from service_harness import backlog_scores, served_uploads

pytestmark = pytest.mark.usefixtures("restore_backbones")

SPLITS = (
    ("train", "train", "test", "test", "validation", "validation")
    + ("calibration",) * 3
    + ("train",)
)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tuned-work")


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """80 drawn JPEGs (circle = offensive, half of them) over the four splits."""
    return drawn_split_manifest(
        tmp_path_factory.mktemp("tuned-photos"), 80, SPLITS, offensive=lambda i: i % 2 == 0,
        size=lambda i: (160 + i % 4 * 30, 150),
    )  # fmt: skip


@pytest.fixture(scope="module")
def tuned(manifest: Path, workdir: Path) -> ModelBundle:
    torch.set_num_threads(2)
    cfg = TrainConfig(hidden=(16,), epochs=3, ensemble=1, batch_size=32, lr=1e-3, dropout=0.1,
                      finetune_epochs=1, finetune_head="tuned")  # fmt: skip
    bundle = train_bundle(manifest, cfg, workdir=workdir, progress=False).bundle
    certify = CertifyConfig(target_recall=0.8, confidence=0.8)
    return calibrate_bundle(bundle, manifest, certify, workdir=workdir, progress=False)


def test_training_tunes_the_backbone_and_the_bundle_names_the_tuned_weights(
    tuned: ModelBundle, manifest: Path, workdir: Path
) -> None:
    assert is_tuned(tuned.backbone_id) and tuned.backbone_weights is not None
    assert tuned.backbone_weights.parent == workdir / "backbones"
    assert tuned.train_config["finetune_epochs"] == 1 and tuned.train_config["backbone"] == BASE
    name = backbone_for(tuned.backbone_id)
    paths = [Path(p) for p in pd.read_csv(manifest)["path"][:8]]
    frozen = embed_files(paths, workdir=workdir, backbone=BASE, progress=False)
    tuned_emb = embed_files(paths, workdir=workdir, backbone=name, progress=False)
    assert tuned_emb.shape == frozen.shape
    assert np.abs(tuned_emb - frozen).max() > 1e-2  # the embeddings come from the tuned network
    assert tuned.policy is not None


def test_the_head_is_the_classifier_tuned_with_the_backbone_and_serves_as_in_pytorch(
    tuned: ModelBundle, manifest: Path, workdir: Path
) -> None:
    """`finetune_head="tuned"`: no head is fitted after tuning — the bundle's head
    is the classifier trained jointly with the backbone, and the served path (the tuned backbone's
    ONNX graph, then that head) gives the PyTorch model's scores on real decoded photos."""
    from photosieve.learn.finetune import TunedLite0
    from photosieve.learn.head import MLPHead
    from photosieve.learn.pixel_finetune import score_pixels
    from photosieve.vision.preprocess import load_for_model

    head = tuned.head
    assert isinstance(head, MLPHead)  # one network, not an ensemble of refitted heads
    assert tuned.train_config["finetune_head"] == "tuned"
    assert head.epochs == 1 and "ema_val_review_rate" in head.history_[-1]
    model = TunedLite0(hidden=(16,), dropout=0.1)
    assert tuned.backbone_weights is not None
    model.backbone.load_state_dict(torch.load(tuned.backbone_weights, weights_only=True))
    model.classifier.load_state_dict(head.network_.state_dict())
    frame = pd.read_csv(manifest)
    pixels = np.stack([load_for_model(p, tuned.preprocess) for p in frame["path"]])
    want = score_pixels(model.eval(), torch.from_numpy(pixels), np.arange(len(frame)))
    served = score_rows(tuned, frame, workdir=workdir, progress=False)
    np.testing.assert_allclose(served, want, rtol=0, atol=1e-3)
    assert np.ptp(served) > 1e-3  # not a constant


def test_a_saved_tuned_bundle_serves_the_tuned_network_in_a_fresh_process(
    tuned: ModelBundle, manifest: Path, workdir: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    saved = tuned.save(tmp_path / "bundle")
    assert (saved / BACKBONE_FILE).is_file()
    frame = pd.read_csv(manifest)
    want = score_rows(tuned, frame, workdir=workdir, progress=False)
    name = backbone_for(tuned.backbone_id)
    monkeypatch.delitem(registry._REGISTRY, name)  # as a process that never trained it
    with pytest.raises(ValueError, match="not installed"):
        backbone_for(tuned.backbone_id)
    loaded = ModelBundle.load(saved)  # registers the bundle's own copy of the weights
    assert backbone_for(loaded.backbone_id) == name
    assert loaded.backbone_weights == saved / BACKBONE_FILE
    scorer = Scorer(loaded)
    paths = [Path(p) for p in frame["path"]]
    by_files = np.array([s.score for s in scorer.score_paths(paths)])
    np.testing.assert_allclose(by_files, want, rtol=0, atol=1e-5)
    by_bytes = scorer.score_bytes(paths[5].read_bytes())
    assert by_bytes.score == pytest.approx(want[5], abs=1e-5)
    # re-saving a loaded bundle over itself keeps its weights (calibrate does this)
    again = loaded.with_policy(loaded.policy).save(saved)  # type: ignore[arg-type]
    assert ModelBundle.load(again).backbone_id == tuned.backbone_id


def test_the_batch_workers_score_with_the_tuned_graph(
    tuned: ModelBundle, manifest: Path, workdir: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("PHOTOSIEVE_WORKDIR", str(workdir))
    frame = pd.read_csv(manifest)
    got = backlog_scores(tuned, manifest.parent, tmp_path, list(frame["path"]))
    want = score_rows(tuned, frame, workdir=workdir, progress=False)
    np.testing.assert_allclose(got["score"].to_numpy(), want, atol=1e-5)


def test_weights_that_are_not_the_bundles_are_refused(tuned: ModelBundle, tmp_path: Path) -> None:
    saved = tuned.save(tmp_path / "bundle")
    other = tmp_path / "other.pt"
    state = torch.load(saved / BACKBONE_FILE, weights_only=True)
    state["_conv_stem.weight"] = state["_conv_stem.weight"] * 1.01
    torch.save(state, other)
    shutil.copyfile(other, saved / BACKBONE_FILE)
    with pytest.raises(ValueError, match="trained on"):
        ModelBundle.load(saved)
    assert is_tuned(register_tuned(other))  # the file itself is a valid tuned backbone


def test_fine_tuning_refuses_negative_epochs_no_runs_unknown_heads_and_ready_embeddings(
    manifest: Path,
) -> None:
    # embeddings computed before tuning cannot be the tuned backbone's (retrain passes none)
    with pytest.raises(ValueError, match="yet to be tuned"):
        train_bundle(manifest, TrainConfig(finetune_epochs=1), embeddings=np.zeros((80, 2560)))
    with pytest.raises(ValueError, match="≥ 0"):
        TrainConfig(finetune_epochs=-1)
    with pytest.raises(ValueError, match="finetune_head must be"):
        TrainConfig(finetune_epochs=1, finetune_head="best")
    with pytest.raises(ValueError, match="finetune_seeds must be ≥ 1"):
        TrainConfig(finetune_epochs=1, finetune_seeds=0)
    with pytest.raises(ValueError, match="built-in"):
        registry.register_backbone(BASE, lambda: registry.backbone_config(BASE), lambda p: None)  # type: ignore[arg-type,return-value]


def test_the_recipe_picks_its_backbone_unless_told() -> None:
    """Frozen: the product's default (Lite1); tuned: the backbone tuning starts from (Lite0)."""
    assert TrainConfig().backbone == DEFAULT_BACKBONE == "efficientnet_lite1_avgmax"
    assert TrainConfig(finetune_epochs=1).backbone == BASE == "efficientnet_lite0_avgmax"
    assert TrainConfig(backbone="efficientnet_lite0").backbone == "efficientnet_lite0"
    with pytest.raises(ValueError, match="fine-tuning starts from efficientnet_lite0_avgmax"):
        TrainConfig(finetune_epochs=1, backbone=DEFAULT_BACKBONE)


def test_the_service_serves_an_upload_with_the_tuned_network(
    tuned: ModelBundle, manifest: Path, workdir: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """The live bundle's tuned backbone is registered when the service loads it (here after it
    was dropped from the registry, as in a fresh service process)."""
    monkeypatch.setenv("PHOTOSIEVE_WORKDIR", str(workdir))
    frame = pd.read_csv(manifest)
    want = score_rows(tuned, frame, workdir=workdir, progress=False)
    monkeypatch.delitem(registry._REGISTRY, backbone_for(tuned.backbone_id))
    # the photo whose score is least saturated: frozen weights would move it
    i = int(np.argmin(np.abs(want - 0.5)))
    (body,) = served_uploads(tuned, tmp_path, [Path(frame["path"][i])])
    assert body["score"] == pytest.approx(want[i], abs=1e-5)
    assert body["model_version"] == tuned.version


def test_several_tuning_runs_serve_as_one_soup_network(
    tuned: ModelBundle, manifest: Path, workdir: Path, tmp_path: Path
) -> None:
    """`finetune_seeds=2`: two runs from one start (the first is the one-run bundle's), their
    mean weights served as one network, the soup in the log, the bundle and the report."""
    from photosieve.evaluate.report import write_report

    cfg = TrainConfig(hidden=(16,), epochs=3, ensemble=1, batch_size=32, lr=1e-3, dropout=0.1,
                      finetune_epochs=1, finetune_head="tuned", finetune_seeds=2)  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        soup = train_bundle(manifest, cfg, workdir=workdir, progress=False).bundle
    assert soup.train_config["finetune_seeds"] == 2 and is_tuned(soup.backbone_id)
    assert soup.backbone_id != tuned.backbone_id
    last = soup.head.history_[-1]  # type: ignore[union-attr]
    assert last["soup"] == 2 and len(last["runs_val_review_rate"]) == 2
    # a soup that ranks validation worse than each of its runs says so (short runs: here, 1 epoch)
    worse = last["val_review_rate"] > max(last["runs_val_review_rate"])
    said = [w for w in caught if "soup of 2 runs" in str(w.message)]
    assert len(said) == int(worse)
    one, two = (torch.load(b.backbone_weights, weights_only=True) for b in (tuned, soup))
    moved = [k for k in one if one[k].is_floating_point() and not torch.equal(one[k], two[k])]
    assert "_conv_stem.weight" in moved  # the stem is the mean of two runs, not the first
    certify = CertifyConfig(target_recall=0.8, confidence=0.8)
    served = calibrate_bundle(soup, manifest, certify, workdir=workdir, progress=False)
    assert served.policy is not None
    page = write_report(served.save(tmp_path / "bundle"), manifest, tmp_path / "report.html",
                        workdir=workdir).read_text()  # fmt: skip
    assert "the mean weights of 2 runs from one start" in page


def test_the_report_says_how_the_backbone_was_tuned(
    tuned: ModelBundle, manifest: Path, workdir: Path, tmp_path: Path
) -> None:
    from photosieve.evaluate.report import write_report

    saved = tuned.save(tmp_path / "bundle")
    page = write_report(saved, manifest, tmp_path / "report.html", workdir=workdir).read_text()
    assert "backbone fine-tuning" in page and "every layer, 1 epoch on" in page
    assert "the classifier tuned with it" in page and tuned.backbone_id in page
