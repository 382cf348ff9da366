"""Fine-tuning Lite0's tail on cached trunk maps: the cache, the training, the served export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from photosieve.learn.finetune import (
    FineTuneConfig,
    TunedLite0,
    embed_maps,
    export_tuned_onnx,
    fine_tune,
    score_maps,
)
from photosieve.learn.metrics import review_rate_at_recall
from photosieve.learn.trunk_cache import augment, build_trunk_cache, photo_views
from photosieve.vision.backbone import create_backbone
from photosieve.vision.onnx import UInt8Features, create_session
from photosieve.vision.preprocess import load_for_model, load_image, preprocess


@pytest.fixture(scope="module")
def photos(bench_dir: Path) -> tuple[list[Path], np.ndarray]:
    """Five offensive and five fine bench photos, spread over the manifest."""
    manifest = pd.read_csv(bench_dir / "manifest.csv")
    rows = pd.concat(
        [manifest[manifest["label"] == lab].iloc[::700].head(5) for lab in ("offensive", "ok")]
    )
    return [bench_dir / p for p in rows["path"]], (rows["label"] == "offensive").to_numpy()


@pytest.fixture(scope="module")
def maps(photos: tuple[list[Path], np.ndarray], tmp_path_factory: pytest.TempPathFactory):
    backbone = create_backbone("efficientnet_lite0_avgmax")
    folder = tmp_path_factory.mktemp("trunk")
    return build_trunk_cache(photos[0], folder, backbone, views=2, batch_size=4)


def test_cache_view0_is_the_served_preprocessing(photos, maps) -> None:
    paths, _ = photos
    assert maps.shape == (len(paths), 2, 112, 14, 14) and maps.dtype == np.float16
    model = TunedLite0()
    served = np.stack([load_for_model(p, model.backbone.config.preprocess) for p in paths])
    with torch.no_grad():
        x = UInt8Features(model.backbone).normalise(torch.from_numpy(served))
        expected = model.trunk(x).numpy()
    view0 = np.asarray(maps[:, 0], dtype=np.float32)
    scale = np.abs(expected).max()
    assert np.abs(view0 - expected).max() <= 2e-3 * scale  # fp16 rounding only
    assert np.abs(np.asarray(maps[:, 1], np.float32) - expected).mean() > 0.05 * expected.std()
    # the augmented view is deterministic given (seed, row, view)
    cfg = model.backbone.config.preprocess
    again = photo_views(paths[3], 3, 2, 0, cfg)
    np.testing.assert_array_equal(again, photo_views(paths[3], 3, 2, 0, cfg))
    other = augment(load_image(paths[3]), np.random.default_rng([1, 3, 1]), cfg)
    assert not np.array_equal(again[1], other)


def test_tiny_fine_tune_changes_the_tail_and_exports_like_pytorch(photos, maps, tmp_path) -> None:
    paths, labels = photos
    y = labels.astype(np.int64)
    cfg = FineTuneConfig(
        epochs=2, samples_per_epoch=16, batch_size=8, lr_tail=1e-3, stats_rows=8, warm_start=False
    )
    train, val = np.array([0, 1, 2, 5, 6, 7]), np.array([3, 4, 8, 9])
    frozen = TunedLite0()
    result = fine_tune(maps, y, train, val, cfg)
    tuned = result.model
    assert [r["epoch"] for r in result.history] == [1, 2] and result.best_epoch in (1, 2)
    before, after = frozen.backbone.state_dict(), tuned.backbone.state_dict()
    tail = ("_blocks.11.", "_blocks.15.", "_conv_head")
    tail_keys = [k for k in after if k.startswith(tail) and k.endswith(".weight")]
    assert tail_keys and all(not torch.equal(before[k], after[k]) for k in tail_keys)
    for k in (
        k for k in after if k.startswith(("_conv_stem", "_bn0", "_blocks.0.", "_blocks.10."))
    ):
        assert torch.equal(before[k], after[k]), k  # the trunk is frozen
    # deterministic given the seed
    again = fine_tune(maps, y, train, val, cfg).model.backbone.state_dict()
    assert all(torch.equal(after[k], again[k]) for k in tail_keys)

    # the tuned backbone's ONNX export = its PyTorch forward on real photos (served path)
    session = create_session(export_tuned_onnx(tuned, tmp_path / "tuned.onnx"), threads=1)
    pre = tuned.backbone.config.preprocess
    (onnx_out,) = session.run(None, {"image": np.stack([load_for_model(p, pre) for p in paths])})
    with torch.no_grad():
        x = torch.from_numpy(np.stack([preprocess(p, pre) for p in paths]))
        torch_out = tuned.backbone.eval().forward_features(x).numpy()
        frozen_out = frozen.backbone.forward_features(x).numpy()
    assert onnx_out.shape == (len(paths), 2560)
    assert np.abs(onnx_out - torch_out).max() <= 1e-3
    assert np.abs(torch_out - frozen_out).max() > 1e-2  # the export carries the tuned weights
    # scoring from the cached clean view ≈ scoring the served embedding (fp16 trunk maps)
    emb = embed_maps(tuned, maps, np.arange(len(paths)))
    assert np.abs(emb - onnx_out).max() <= 2e-2 * np.abs(onnx_out).max()
    with torch.no_grad():
        served = torch.sigmoid(tuned.classifier(torch.from_numpy(onnx_out))[:, 0]).numpy()
    np.testing.assert_allclose(score_maps(tuned, maps, np.arange(len(paths))), served, atol=2e-2)


def test_warm_start_is_epoch_zero_and_early_stopping_keeps_the_best(photos, maps) -> None:
    y = photos[1].astype(np.int64)
    train, val = np.array([0, 1, 2, 5, 6, 7]), np.array([3, 4, 8, 9])
    cfg = FineTuneConfig(epochs=1, samples_per_epoch=8, batch_size=8, warm_epochs=3)
    result = fine_tune(maps, y, train, val, cfg)
    assert [r["epoch"] for r in result.history] == [0, 1]
    assert result.best_tuned_epoch == 1 and result.tuned_state  # kept even if epoch 0 won
    best = result.history[result.best_epoch]
    scores = score_maps(result.model, maps, val)
    assert review_rate_at_recall(scores, y[val], recall=0.99) == best["val_review_rate"]


@pytest.mark.parametrize(
    ("backbone", "blocks", "side"),
    [("efficientnet_lite0_avgmax", 11, 14), ("efficientnet_lite1_avgmax", 15, 15)],
)
def test_trunk_and_tail_split_any_lite_at_stride_16(
    photos, backbone: str, blocks: int, side: int
) -> None:
    """The split is read off the stage table: Lite0's 11 trunk blocks (as cached since session
    5), Lite1's 15; trunk then tail is the served embedding, to the bit, on real photos."""
    from photosieve.learn.finetune import TRUNK_CHANNELS, trunk_blocks

    model = TunedLite0(backbone=backbone)
    net = model.backbone
    assert trunk_blocks(net.variant) == blocks == len(model.trunk.blocks)
    assert len(model.trunk.blocks) + len(model.tail.blocks) == len(net._blocks)
    x = torch.from_numpy(np.stack([preprocess(p, net.config.preprocess) for p in photos[0][:3]]))
    with torch.no_grad():
        fmap = model.trunk(x)
        assert fmap.shape == (3, TRUNK_CHANNELS, side, side)
        assert torch.equal(model.tail(fmap), net.forward_features(x))
