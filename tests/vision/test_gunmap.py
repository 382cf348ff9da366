"""The gun-map backbone: avg+max plus per-position firearm logits; ONNX agrees with PyTorch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from onnx_check import onnx_and_torch
from photosieve.scoring import backbone_for
from photosieve.vision.backbone import (
    EfficientNetLite,
    backbone_config,
    create_backbone,
    list_backbones,
)
from photosieve.vision.embed import Embedder
from photosieve.vision.pooling import GUN_CLASSES, GUN_FEATURES, GUN_TOPK, POOLINGS, pool

NAME = "efficientnet_lite0_gunmap"
REVOLVER = GUN_CLASSES.index(763)


@pytest.fixture(scope="module")
def gunmap() -> EfficientNetLite:
    torch.set_num_threads(1)
    return create_backbone(NAME)


def test_embedding_is_avgmax_then_the_classifier_at_every_position(
    gunmap: EfficientNetLite,
) -> None:
    avgmax = create_backbone("efficientnet_lite0_avgmax")
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        feats = gunmap.forward_features(x)
        fmap = gunmap.forward_map(x)  # (2, 1280, 7, 7)
        torch.testing.assert_close(feats[:, :2560], avgmax.forward_features(x))
        per_pos = torch.einsum("nchw,kc->nkhw", fmap, gunmap._fc.weight)
        per_pos = per_pos + gunmap._fc.bias.view(1, -1, 1, 1)  # (2, 1000, 7, 7)
        # the classifier is linear: the mean of the per-position logits is the photo's logits
        torch.testing.assert_close(per_pos.mean(dim=(2, 3)), gunmap(x), atol=1e-4, rtol=1e-4)
        guns = per_pos[:, list(GUN_CLASSES)].flatten(2)  # (2, 4, 49)
        p_gun = torch.softmax(per_pos, dim=1)[:, list(GUN_CLASSES)].sum(dim=1).flatten(1)
    expected = torch.cat(
        [
            guns.amax(dim=2),
            guns.sort(dim=2, descending=True).values[:, :, :GUN_TOPK].mean(dim=2),
            p_gun.amax(dim=1, keepdim=True),
            p_gun.sort(dim=1, descending=True).values[:, :GUN_TOPK].mean(dim=1, keepdim=True),
        ],
        dim=1,
    )
    torch.testing.assert_close(feats[:, 2560:], expected, atol=1e-4, rtol=1e-4)
    cfg = gunmap.config
    assert feats.shape == (2, cfg.embed_dim) == (2, 2560 + GUN_FEATURES)
    assert cfg == backbone_config(NAME) and cfg.embed_dim == POOLINGS["avgmax_gunmap"]
    assert cfg.id.startswith(f"{NAME}-") and NAME in list_backbones()
    assert cfg.id != backbone_config("efficientnet_lite0_avgmax").id  # its own cache key


def test_pooling_must_match_embed_dim() -> None:
    with pytest.raises(ValueError, match="2570-d"):
        EfficientNetLite(backbone_config("efficientnet_lite0_avgmax"), pooling="avgmax_gunmap")


def test_onnx_matches_pytorch_and_the_map_finds_revolvers(
    bench_dir: Path, vision_workdir: Path
) -> None:
    manifest = pd.read_csv(bench_dir / "manifest.csv")
    caltech = manifest[manifest["origin"].str.startswith("caltech101/")]
    revolvers = caltech[caltech["origin"] == "caltech101/revolver"]["path"].iloc[:8]
    others = caltech[caltech["label"] == "ok"]["path"].iloc[::800].iloc[:8]
    files = [bench_dir / p for p in [*revolvers, *others]]
    embedder = Embedder(NAME, workdir=vision_workdir, threads=1)
    onnx_out, torch_out = onnx_and_torch(embedder, files)
    assert onnx_out.shape == (16, 2570)
    assert np.abs(onnx_out - torch_out).max() <= 1e-3
    # the per-position revolver logit: higher on every-day revolver photos than on the rest
    best = onnx_out[:, 2560 + REVOLVER]
    assert best[:8].mean() > best[8:].mean() + 3.0
    assert np.median(best[:8]) > best[8:].max()


def test_gun_map_on_a_map_smaller_than_top_k() -> None:
    fc = torch.nn.Linear(1280, 1000)
    fmap = torch.rand(1, 1280, 1, 2)  # 2 positions < GUN_TOPK
    with torch.no_grad():
        feats = pool(fmap, "avgmax_gunmap", fc)
        logits = fc(fmap.flatten(2).transpose(1, 2))[0][:, list(GUN_CLASSES)]  # (2, 4)
    assert feats.shape == (1, POOLINGS["avgmax_gunmap"])
    torch.testing.assert_close(feats[0, 2560:2564], logits.amax(dim=0))
    torch.testing.assert_close(feats[0, 2564:2568], logits.mean(dim=0))  # top-2 of 2 = all


def test_a_gunmap_bundle_finds_its_backbone() -> None:
    assert backbone_for(backbone_config(NAME).id) == NAME
