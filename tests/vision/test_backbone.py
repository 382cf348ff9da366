"""The pretrained backbone recognises real photos, through the project's own decode path."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import skimage.data
import torch

from photosieve.vision.backbone import (
    BackboneConfig,
    backbone_config,
    create_backbone,
    list_backbones,
    lite0_weights_path,
)
from photosieve.vision.preprocess import PreprocessConfig, preprocess


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.set_num_threads(1)
    return create_backbone("efficientnet_lite0")


def _logits(model: torch.nn.Module, data: bytes) -> torch.Tensor:
    x = torch.from_numpy(preprocess(data, model.config.preprocess))[None]
    with torch.no_grad():
        return model(x)[0]


def test_chelsea_is_a_cat(model: torch.nn.Module, to_jpeg: Callable[[np.ndarray], bytes]) -> None:
    top1 = int(_logits(model, to_jpeg(skimage.data.chelsea())).argmax())
    assert 281 <= top1 <= 285  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def test_coffee_is_espresso(model: torch.nn.Module, to_jpeg: Callable[[np.ndarray], bytes]) -> None:
    assert int(_logits(model, to_jpeg(skimage.data.coffee())).argmax()) == 967


def test_interface_shapes_and_forward_is_head_of_features(model: torch.nn.Module) -> None:
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        feats = model.forward_features(x)
        logits = model.forward_head(feats)
        both = model(x)
    assert feats.shape == (2, 1280)
    assert logits.shape == (2, 1000)
    torch.testing.assert_close(both, logits)
    assert not model.training


def test_config_carries_preprocessing_and_weights_hash(model: torch.nn.Module) -> None:
    cfg = model.config
    assert isinstance(cfg, BackboneConfig)
    assert cfg == backbone_config("efficientnet_lite0")
    assert cfg.embed_dim == 1280
    assert cfg.preprocess == PreprocessConfig(input_size=224)
    assert cfg.preprocess.mean == (0.485, 0.456, 0.406)
    # The id changes with the weights: it carries a hash of the checkpoint file.
    assert cfg.id.startswith("efficientnet_lite0-") and len(cfg.id.split("-")[-1]) == 10
    assert lite0_weights_path().is_file()


def test_unknown_backbone_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="efficientnet_lite0") as info:
        create_backbone("resnet9000")
    assert "resnet9000" in str(info.value)
    assert list_backbones() == [
        "efficientnet_lite0",
        "efficientnet_lite0_384_avgmax",
        "efficientnet_lite0_avgmax",
        "efficientnet_lite0_avgmax_d384",
        "efficientnet_lite0_gunmap",
        "efficientnet_lite1_avgmax",
        "efficientnet_lite2_224_avgmax",
        "efficientnet_lite2_avgmax",
    ]


def test_untrained_backbone_differs_from_pretrained(model: torch.nn.Module) -> None:
    fresh = create_backbone(pretrained=False)
    assert not torch.equal(fresh._fc.weight, model._fc.weight)
