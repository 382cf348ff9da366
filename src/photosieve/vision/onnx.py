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
        fold_pads(Path(tmp_name))
        os.replace(tmp_name, target)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return target


def fold_pads(path: Path) -> None:
    """Fold every zero `Pad` of a graph's spatial sides into the `Conv` it feeds, in place.

    TF-"SAME" backbones (Lite1/Lite2, `vision.backbone.Conv2dSame`) pad a stride-2 conv one pixel
    more at the bottom/right. PyTorch exports that as a `Pad` node (its pads built by shape
    arithmetic), which onnxruntime neither folds into the conv nor runs in its blocked NCHWc
    layout: each costs a copy and two layout reorders. ONNX's `Conv` takes asymmetric `pads`
    itself, so after onnxruntime's basic, hardware-independent optimisations (constant folding:
    the pads become constants) each such `Pad` is removed and its pads added to the conv's.
    The same numbers (tests/vision/test_lite2.py compares with PyTorch); graphs without a `Pad`
    are left untouched.
    """
    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    if not any(node.op_type == "Pad" for node in onnx.load(str(path)).graph.node):
        return
    folded = path.with_suffix(".basic.onnx")
    try:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(folded)
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        model = onnx.load(str(folded))
    finally:
        folded.unlink(missing_ok=True)
    graph = model.graph
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    for pad in [n for n in graph.node if n.op_type == "Pad"]:
        after = consumers.get(pad.output[0], [])
        pads = constants.get(pad.input[1]) if len(pad.input) > 1 else None
        value = constants.get(pad.input[2]) if len(pad.input) > 2 and pad.input[2] else 0.0
        mode = next((a.s for a in pad.attribute if a.name == "mode"), b"constant")
        if (
            pads is None
            or len(pads) != 8
            or mode != b"constant"
            or value is None  # a pad value not known here
            or float(value) != 0.0
            or (len(pad.input) > 3 and pad.input[3])  # an axes input: not the 4-d layout above
            or any(pads[[0, 1, 4, 5]])
            or len(after) != 1
            or after[0].op_type != "Conv"
            or pad.output[0] in outputs
        ):
            continue
        conv = after[0]
        attrs = {a.name: a for a in conv.attribute}
        if "auto_pad" in attrs and attrs["auto_pad"].s not in (b"", b"NOTSET"):
            continue
        old = list(attrs["pads"].ints) if "pads" in attrs else [0, 0, 0, 0]
        new = [old[0] + pads[2], old[1] + pads[3], old[2] + pads[6], old[3] + pads[7]]
        keep = [a for a in conv.attribute if a.name != "pads"]
        del conv.attribute[:]
        conv.attribute.extend([*keep, helper.make_attribute("pads", [int(p) for p in new])])
        conv.input[0] = pad.input[0]
        graph.node.remove(pad)
    used = {name for node in graph.node for name in node.input}
    for tensor in [t for t in graph.initializer if t.name not in used]:
        graph.initializer.remove(tensor)  # the folded pads: a session would warn of each
    onnx.save(model, str(path))
