"""EfficientNet-Lite2 (260 px) and Lite1 (240 px): strict loading, TF-SAME padding A/B, ONNX vs
PyTorch on photos, and SAME-padded graphs without Pad nodes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest
import skimage.data
import torch
from PIL import Image

from onnx_check import onnx_and_torch
from photosieve.vision.backbone import (
    Conv2dSame,
    EfficientNetLite,
    backbone_config,
    create_lite1,
    create_lite2,
    list_backbones,
)
from photosieve.vision.embed import Embedder
from photosieve.vision.onnx import onnx_path, write_graph
from photosieve.vision.preprocess import (
    PreprocessConfig,
    to_input_array,
)

LITE2 = "efficientnet_lite2_avgmax"
LITE1 = "efficientnet_lite1_avgmax"


def _probabilities(model: EfficientNetLite, array: np.ndarray) -> torch.Tensor:
    cfg = PreprocessConfig(input_size=model.config.preprocess.input_size)
    x = torch.from_numpy(to_input_array(Image.fromarray(array), cfg)[None])  # (1, 3, size, size)
    with torch.no_grad():
        return model(x).softmax(dim=-1)[0]  # (1000,)


def test_registered_with_its_own_input_size_and_id() -> None:
    assert LITE2 in list_backbones()
    cfg = backbone_config(LITE2)
    assert cfg.preprocess.input_size == 260 and cfg.embed_dim == 2560
    assert cfg.id.startswith("efficientnet_lite2_avgmax_same260-")
    assert cfg.id != backbone_config("efficientnet_lite0_avgmax").id


def test_same_padding_is_tensorflows() -> None:
    conv = Conv2dSame(1, 1, 3, stride=2, bias=False)
    torch.nn.init.ones_(conv.weight)
    x = torch.arange(16.0).view(1, 1, 4, 4)
    with torch.no_grad():
        out = conv(x)  # TF pads 0 before and 1 after on an even input: windows start at 0 and 2
    assert out.shape == (1, 1, 2, 2)
    assert float(out[0, 0, 0, 0]) == float(x[0, 0, :3, :3].sum())


def test_lite1_registered_at_240_px_with_its_own_id() -> None:
    cfg = backbone_config(LITE1)
    assert cfg.preprocess.input_size == 240 and cfg.embed_dim == 2560
    assert cfg.id.startswith("efficientnet_lite1_avgmax_same240-")
    blocks = create_lite1(pretrained=False)._blocks
    assert len(blocks) == 21  # 1 + 3 + 3 + 4 + 4 + 5 + 1: the checkpoint loads strictly


@pytest.mark.parametrize("create", [create_lite2, create_lite1])
def test_same_padding_beats_symmetric_on_imagenet_photos(create: Any) -> None:
    """The checkpoints were trained with TF SAME padding: it must keep the classes right."""
    same, symmetric = create(pooling="avg"), create(padding="symmetric", pooling="avg")
    log_p = {"same": 0.0, "symmetric": 0.0}
    for array, cls in ((skimage.data.chelsea(), 285), (skimage.data.coffee(), 967)):
        p_same, p_sym = _probabilities(same, array), _probabilities(symmetric, array)
        assert int(p_same.argmax()) == cls
        log_p["same"] += float(p_same[cls].log())
        log_p["symmetric"] += float(p_sym[cls].log())
    assert log_p["same"] > log_p["symmetric"]


def test_unknown_variant_or_padding_is_refused() -> None:
    cfg = backbone_config(LITE2)
    with pytest.raises(ValueError, match="unknown variant"):
        EfficientNetLite(cfg, pooling="avgmax", variant="lite9")
    with pytest.raises(ValueError, match="unknown padding"):
        EfficientNetLite(cfg, pooling="avgmax", variant="lite2", padding="valid")


@pytest.mark.parametrize("name", [LITE2, "efficientnet_lite2_224_avgmax", LITE1])
def test_lite2_onnx_matches_pytorch_on_real_photos(
    vision_workdir: Path, bench_dir: Path, tmp_path: Path, name: str
) -> None:
    """One ONNX graph per input size (260 px native, 224 px the cheaper variant)."""
    embedder = Embedder(name, workdir=vision_workdir, threads=1)
    manifest = pd.read_csv(bench_dir / "manifest.csv")
    sources: list[Path] = [bench_dir / p for p in manifest["path"].iloc[::2500]]
    for array in (skimage.data.chelsea(), skimage.data.astronaut()):
        path = tmp_path / f"{len(sources)}.png"
        Image.fromarray(array).save(path)
        sources.append(path)
    onnx_out, torch_out = onnx_and_torch(embedder, sources)
    assert onnx_out.shape == (len(sources), 2560)
    assert np.abs(onnx_out - torch_out).max() <= 1e-3
    # the SAME padding lives in the convs: no Pad node (each cost a copy and two layout
    # reorders in onnxruntime), and no shape arithmetic building pads
    ops = {node.op_type for node in onnx.load(str(onnx_path(name, vision_workdir))).graph.node}
    assert "Pad" not in ops and "ConstantOfShape" not in ops


def test_fold_pads_moves_a_bottom_right_pad_into_the_conv(tmp_path: Path) -> None:
    """A stride-2 SAME conv over an even side: the graph without its Pad gives the same numbers."""
    conv = Conv2dSame(3, 4, 3, stride=2, bias=False).eval()
    x = torch.randn(1, 3, 16, 16)
    target = write_graph(conv, x, tmp_path / "conv.onnx", "x", "y")
    graph = onnx.load(str(target)).graph
    ops = [node.op_type for node in graph.node]
    assert "Pad" not in ops and ops.count("Conv") == 1
    used = {name for node in graph.node for name in node.input}
    assert all(t.name in used for t in graph.initializer)  # the folded pads are gone too
    (got,) = ort.InferenceSession(str(target)).run(None, {"x": x.numpy()})
    with torch.no_grad():
        want = conv(x).numpy()
    assert got.shape == want.shape == (1, 4, 8, 8)
    assert np.abs(got - want).max() <= 1e-5
