"""The avg+max pooled backbone: same weights, 2560-d embedding, ONNX agrees with PyTorch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from photosieve.vision.backbone import (
    EfficientNetLite,
    backbone_config,
    create_backbone,
)
from photosieve.vision.embed import Embedder
from photosieve.vision.preprocess import load_for_model, preprocess

NAME = "efficientnet_lite0_avgmax"


@pytest.fixture(scope="module")
def avgmax() -> EfficientNetLite:
    torch.set_num_threads(1)
    return create_backbone(NAME)


def test_embedding_is_average_then_max_pool_of_the_same_map(avgmax: EfficientNetLite) -> None:
    plain = create_backbone("efficientnet_lite0")
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        feats = avgmax.forward_features(x)
        fmap = plain.forward_map(x)
        torch.testing.assert_close(feats[:, :1280], plain.forward_features(x))
        torch.testing.assert_close(feats[:, 1280:], fmap.amax(dim=(2, 3)))
        # ImageNet logits come from the average half, as for the plain backbone
        torch.testing.assert_close(avgmax(x), plain(x))
    cfg = avgmax.config
    assert feats.shape == (2, cfg.embed_dim) and cfg.embed_dim == 2560
    assert cfg == backbone_config(NAME)
    assert (
        cfg.id.startswith(f"{NAME}-") and cfg.id != backbone_config("efficientnet_lite0").id
    )  # own cache key
    assert cfg.preprocess == plain.config.preprocess


def test_pooling_must_match_embed_dim() -> None:
    with pytest.raises(ValueError, match="2560-d"):
        EfficientNetLite(backbone_config("efficientnet_lite0"), pooling="avgmax")
    with pytest.raises(ValueError, match="unknown pooling"):
        EfficientNetLite(backbone_config("efficientnet_lite0"), pooling="median")


def test_onnx_matches_pytorch_on_real_photos(
    avgmax: EfficientNetLite, bench_dir: Path, vision_workdir: Path
) -> None:
    manifest = pd.read_csv(bench_dir / "manifest.csv")
    files = [bench_dir / p for p in manifest["path"].iloc[::2000]]
    embedder = Embedder(NAME, workdir=vision_workdir, threads=1)
    assert embedder.config.embed_dim == 2560
    cfg = embedder.config.preprocess
    onnx_out = embedder.embed_arrays(np.stack([load_for_model(f, cfg) for f in files]))
    with torch.no_grad():
        x = torch.from_numpy(np.stack([preprocess(f, cfg) for f in files]))
        torch_out = avgmax.forward_features(x).numpy()
    assert onnx_out.shape == (len(files), 2560)
    assert np.abs(onnx_out - torch_out).max() <= 1e-3
