"""Full fine-tuning on pixels: the augmentation, the loop (tiny, CPU), the carried weights, the
served ONNX export of the tuned backbone."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from photosieve.learn.finetune import TunedLite0, export_tuned_onnx
from photosieve.learn.pixel_finetune import (
    PixelTuneConfig,
    augment,
    fine_tune_pixels,
    half_state,
    load_half_state,
    score_pixels,
)
from photosieve.vision.onnx import UInt8Features, create_session
from photosieve.vision.preprocess import PreprocessConfig, load_for_model

TINY = PixelTuneConfig(epochs=2, batch_size=8, samples_per_epoch=16, warm_steps=5, patience=5)


def twelve_photos(bench_dir: Path, cfg: PreprocessConfig) -> tuple[torch.Tensor, np.ndarray]:
    """Twelve bench photos (6 offensive, 6 fine) as `cfg`'s served uint8 input, and labels."""
    manifest = pd.read_csv(bench_dir / "manifest.csv")
    manifest = manifest[manifest["source"] == "primary"]
    rows = pd.concat(
        [manifest[manifest["label"] == lab].iloc[::500].head(6) for lab in ("offensive", "ok")]
    )
    pixels = np.stack([load_for_model(bench_dir / p, cfg) for p in rows["path"]])
    return torch.from_numpy(pixels), (rows["label"] == "offensive").to_numpy().astype(np.int64)


@pytest.fixture(scope="module")
def served(bench_dir: Path) -> tuple[torch.Tensor, np.ndarray]:
    """The twelve photos at Lite0's 224 px."""
    return twelve_photos(bench_dir, PreprocessConfig())


def test_augment_is_seeded_in_range_and_crops_flip_and_shrink(served) -> None:
    images, _ = served
    cfg = PixelTuneConfig()
    a = augment(images, cfg, torch.Generator().manual_seed(3))
    b = augment(images, cfg, torch.Generator().manual_seed(3))
    c = augment(images, cfg, torch.Generator().manual_seed(4))
    assert a.shape == (len(images), 3, 224, 224) and a.dtype == torch.float32
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert torch.equal(a, b) and not torch.equal(a, c)
    # with no crop, no jitter and no shrinking, each photo comes back as itself or its mirror
    plain = PixelTuneConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), jitter=0.0,
                            low_res_share=0.0)  # fmt: skip
    out = augment(images, plain, torch.Generator().manual_seed(0))
    x = images.permute(0, 3, 1, 2).float() / 255.0
    same = (out - x).abs().amax(dim=(1, 2, 3))
    mirrored = (out - x.flip(3)).abs().amax(dim=(1, 2, 3))
    assert bool((torch.minimum(same, mirrored) < 1e-4).all())
    assert bool((same < 1e-4).any()) and bool((mirrored < 1e-4).any())
    # the tiny-avatar round trip blurs: less fine detail than the photo had
    tiny = PixelTuneConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), jitter=0.0,
                           low_res_share=1.0, low_res_sides=(32, 32))  # fmt: skip
    blurred = augment(images, tiny, torch.Generator().manual_seed(0))
    detail = (x[..., 1:] - x[..., :-1]).abs().mean()
    assert float((blurred[..., 1:] - blurred[..., :-1]).abs().mean()) < 0.5 * float(detail)


def test_fine_tuning_trains_every_layer_and_keeps_the_best_validation_weights(served) -> None:
    images, y = served
    train, val = np.arange(0, 12, 2), np.arange(1, 12, 2)
    untouched = TunedLite0()
    result = fine_tune_pixels(images, y, train, val, TINY)
    assert [r["epoch"] for r in result.history] == [0, 1, 2]
    assert {"loss", "val_review_rate", "ema_val_review_rate", "val_ap"} <= set(result.history[1])
    best = min(
        [(r["val_review_rate"], -r["val_ap"]) for r in result.history]
        + [(r["ema_val_review_rate"], -r["ema_val_ap"]) for r in result.history[1:]]
    )
    scores = score_pixels(result.model, images, val)
    assert scores.shape == (6,) and ((scores >= 0) & (scores <= 1)).all()
    if result.best_epoch:  # the stem, the first convolution, moved: every layer was trained
        stem = result.model.backbone._conv_stem.weight
        assert not torch.allclose(stem, untouched.backbone._conv_stem.weight)
    kept = result.history[result.best_epoch]
    prefix = "ema_" if result.best_averaged else ""
    assert (kept[f"{prefix}val_review_rate"], -kept[f"{prefix}val_ap"]) == best
    again = fine_tune_pixels(images, y, train, val, TINY)  # seeded: the same run twice
    np.testing.assert_allclose(score_pixels(again.model, images, val), scores, atol=1e-5)


def test_runs_that_share_an_init_seed_start_from_one_model_and_then_differ(served) -> None:
    """`init_seed`: the same warm-started classifier (epoch 0 scores the same), then each run's
    own draws and augmentation — so their weights can be averaged (a model soup)."""
    images, y = served
    train, val = np.arange(0, 12, 2), np.arange(1, 12, 2)
    last = dataclasses.replace(TINY, keep="last_averaged")
    a = fine_tune_pixels(images, y, train, val, dataclasses.replace(last, seed=0, init_seed=7))
    b = fine_tune_pixels(images, y, train, val, dataclasses.replace(last, seed=1, init_seed=7))
    c = fine_tune_pixels(images, y, train, val, dataclasses.replace(last, seed=1, init_seed=8))
    first = {k: a.history[0][k] for k in ("val_ap", "val_review_rate")}
    assert {k: b.history[0][k] for k in first} == first
    assert c.history[0]["val_ap"] != first["val_ap"] or not np.allclose(
        score_pixels(c.model, images, val), score_pixels(b.model, images, val)
    )
    stem_a, stem_b = (r.model.backbone._conv_stem.weight for r in (a, b))
    assert not torch.allclose(stem_a, stem_b)  # different draws and augmentation
    plain = fine_tune_pixels(images, y, train, val, dataclasses.replace(last, seed=0))
    same = fine_tune_pixels(images, y, train, val, dataclasses.replace(last, seed=0, init_seed=0))
    np.testing.assert_allclose(  # init_seed = seed is the run without it
        score_pixels(plain.model, images, val), score_pixels(same.model, images, val), atol=1e-5
    )


def test_the_carried_weights_and_the_onnx_export_serve_the_tuned_model(served, tmp_path) -> None:
    images, y = served
    result = fine_tune_pixels(images, y, np.arange(0, 12, 2), np.arange(1, 12, 2), TINY)
    torch.save(half_state(result.model), tmp_path / "tuned.pt")
    assert (tmp_path / "tuned.pt").stat().st_size < 11e6  # float16, no ImageNet classifier
    loaded = load_half_state(TunedLite0(), torch.load(tmp_path / "tuned.pt", weights_only=True))
    with torch.no_grad():  # float16 weights: the same embedding to a few % of its scale
        carried = UInt8Features(loaded.backbone).eval()(images).numpy()
        trained = UInt8Features(result.model.backbone).eval()(images).numpy()
    assert np.abs(carried - trained).max() <= 3e-2 * np.abs(trained).max()
    session = create_session(export_tuned_onnx(loaded, tmp_path / "tuned.onnx"))
    served_emb = session.run(None, {session.get_inputs()[0].name: images.numpy()})[0]
    with torch.no_grad():
        expected = UInt8Features(loaded.backbone).eval()(images).numpy()
    assert np.abs(served_emb - expected).max() <= 1e-3 * max(1.0, float(np.abs(expected).max()))
    untuned = UInt8Features(TunedLite0().backbone).eval()
    with torch.no_grad():
        assert np.abs(untuned(images).numpy() - expected).max() > 1e-2  # the tuned weights serve


def test_lite1_tunes_at_its_own_input_size_and_refuses_another(served, bench_dir) -> None:
    """`PixelTuneConfig.backbone` picks the network: Lite1 tunes on its 240-px served inputs
    (its 15 trunk blocks, every layer moves) and refuses Lite0's 224-px ones."""
    from photosieve.vision.backbone import backbone_config

    images, y = served
    train, val = np.arange(0, 12, 2), np.arange(1, 12, 2)
    lite1 = dataclasses.replace(
        TINY, backbone="efficientnet_lite1_avgmax", epochs=1, keep="last_averaged"
    )
    with pytest.raises(ValueError, match="240 px"):
        fine_tune_pixels(images, y, train, val, lite1)
    pixels, same_y = twelve_photos(bench_dir, backbone_config(lite1.backbone).preprocess)
    assert (same_y == y).all() and pixels.shape[1:] == (240, 240, 3)
    result = fine_tune_pixels(pixels, y, train, val, lite1)
    assert result.model.backbone.variant == "lite1"
    assert len(result.model.trunk.blocks) == 15
    scores = score_pixels(result.model, pixels, val)
    assert scores.shape == (6,) and ((scores >= 0) & (scores <= 1)).all()
    untouched = TunedLite0(backbone=lite1.backbone)
    stem = result.model.backbone._conv_stem.weight
    assert not torch.allclose(stem, untouched.backbone._conv_stem.weight)
