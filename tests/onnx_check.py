"""The exported graph against the PyTorch backbone it came from, on real photos (vision tests)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from photosieve.vision.backbone import create_backbone
from photosieve.vision.embed import Embedder
from photosieve.vision.preprocess import load_for_model, preprocess


def onnx_and_torch(embedder: Embedder, sources: Sequence[bytes | Path]) -> tuple[np.ndarray, ...]:
    """Embeddings (N, D) of `sources` through the embedder's ONNX graph and through PyTorch."""
    cfg = embedder.config.preprocess
    onnx_out = embedder.embed_arrays(np.stack([load_for_model(s, cfg) for s in sources]))
    model = create_backbone(embedder.backbone)
    with torch.no_grad():
        x = torch.from_numpy(np.stack([preprocess(s, cfg) for s in sources]))
        torch_out = model.forward_features(x).numpy()
    return onnx_out, torch_out
