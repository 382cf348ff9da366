"""ONNX export of a backbone's feature extractor (the session that runs it: `vision.runtime`).

The exported graph takes the resized photos as they come out of the decoder — `uint8` arrays of
shape (N, H, W, 3), RGB — and does the normalisation (÷255, mean/std from the backbone's
`PreprocessConfig`) and layout change inside the graph, so the decode workers only resize. Its
output is the (N, embed_dim) embedding of `forward_features`. The batch axis is dynamic.

Exports are cached in `<workdir>/onnx/<backbone id>.onnx` (written atomically), so a change of
weights (a new id) exports afresh.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from photosieve.config import DEFAULT_BACKBONE, Workdir
from photosieve.vision.backbone import EfficientNetLite, backbone_config, create_backbone
from photosieve.vision.runtime import INPUT_NAME, OUTPUT_NAME
from photosieve.vision.runtime import available_cores as available_cores
from photosieve.vision.runtime import create_session as create_session

OPSET = 17


class UInt8Features(nn.Module):
    """Wraps a backbone: uint8 NHWC RGB → normalised NCHW float → `forward_features`."""

    shift: torch.Tensor
    scale: torch.Tensor

    def __init__(self, backbone: EfficientNetLite) -> None:
        super().__init__()
        self.backbone = backbone
        self.config = backbone.config
        cfg = backbone.config.preprocess
        mean = torch.tensor(cfg.mean, dtype=torch.float32) * 255.0
        std = torch.tensor(cfg.std, dtype=torch.float32) * 255.0
        self.register_buffer("shift", mean.view(1, 3, 1, 1))
        self.register_buffer("scale", (1.0 / std).view(1, 3, 1, 1))

    def normalise(self, image: torch.Tensor) -> torch.Tensor:
        """(N, H, W, 3) uint8 → (N, 3, H, W) normalised float32, as the exported graph does."""
        x = image.permute(0, 3, 1, 2).to(torch.float32)
        return (x - self.shift) * self.scale

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_features(self.normalise(image))


def onnx_path(backbone: str = DEFAULT_BACKBONE, workdir: Path | None = None) -> Path:
    """Where the export of `backbone` lives (whether or not it exists yet)."""
    return Workdir.of(workdir).onnx / f"{backbone_config(backbone).id}.onnx"


def export_onnx(backbone: str = DEFAULT_BACKBONE, workdir: Path | None = None) -> Path:
    """Export the backbone's feature extractor to ONNX unless the cached export exists."""
    target = onnx_path(backbone, workdir)
    if target.is_file():
        return target
    return export_features(create_backbone(backbone), target)


def export_features(backbone: EfficientNetLite, target: Path) -> Path:
    """Write `backbone`'s uint8 → embedding graph to `target` (atomically); also for tuned
    weights (`learn.finetune`), so a tuned backbone is served exactly like a registered one."""
    model = UInt8Features(backbone).eval()
    size = model.config.preprocess.input_size
    example = torch.zeros((2, size, size, 3), dtype=torch.uint8)
    return write_graph(model, example, target, INPUT_NAME, OUTPUT_NAME)


def write_graph(
    model: nn.Module, example: torch.Tensor, target: Path, input_name: str, output_name: str
) -> Path:
    """Export `model` (one input, one output, dynamic batch axis) to `target`, atomically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".export-", suffix=".onnx", dir=target.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (example,),
                tmp_name,
                input_names=[input_name],
                output_names=[output_name],
                dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}},
                opset_version=OPSET,
                dynamo=False,
            )
        os.replace(tmp_name, target)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return target
