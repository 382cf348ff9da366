"""The ONNX export computes the same embeddings as the PyTorch backbone, on real photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skimage.data
from PIL import Image

from onnx_check import onnx_and_torch
from photosieve.vision.embed import Embedder
from photosieve.vision.onnx import available_cores, create_session, export_onnx, onnx_path
from photosieve.vision.preprocess import load_image

PLAIN = "efficientnet_lite0"  # the backbone the `embedder` fixture pins (conftest.py)


def test_onnx_matches_pytorch_on_real_photos(
    embedder: Embedder, bench_dir: Path, tmp_path: Path
) -> None:
    manifest = pd.read_csv(bench_dir / "manifest.csv")
    files = [bench_dir / p for p in manifest["path"].iloc[::1500]]  # spread over sources
    sources: list[bytes | Path] = list(files)
    for array in (skimage.data.chelsea(), skimage.data.coffee(), skimage.data.astronaut()):
        path = tmp_path / f"{len(sources)}.png"
        Image.fromarray(array).save(path)
        sources.append(path)
    onnx_out, torch_out = onnx_and_torch(embedder, sources)
    assert onnx_out.shape == (len(sources), 1280)
    assert np.abs(onnx_out - torch_out).max() <= 1e-3
    # and embed_images (from decoded PIL images) goes the same way
    via_images = embedder.embed_images([load_image(s, draft_size=224) for s in sources])
    np.testing.assert_allclose(via_images, onnx_out, atol=1e-5)


def test_export_is_cached_by_backbone_id(embedder: Embedder, vision_workdir: Path) -> None:
    path = onnx_path(PLAIN, workdir=vision_workdir)
    assert path.is_file() and embedder.config.id in path.name
    mtime = path.stat().st_mtime_ns
    assert export_onnx(PLAIN, workdir=vision_workdir) == path
    assert path.stat().st_mtime_ns == mtime  # not exported again


def test_session_threads_and_batch_axis(vision_workdir: Path) -> None:
    path = export_onnx(PLAIN, workdir=vision_workdir)
    session = create_session(path)
    assert session.get_inputs()[0].shape[0] == "batch"
    assert available_cores() >= 1
    for n in (1, 5):
        (out,) = session.run(None, {"image": np.zeros((n, 224, 224, 3), np.uint8)})
        assert out.shape == (n, 1280)
    with pytest.raises(ValueError, match="threads"):
        create_session(path, threads=0)


def test_embed_arrays_rejects_wrong_input(embedder: Embedder) -> None:
    with pytest.raises(ValueError, match="uint8"):
        embedder.embed_arrays(np.zeros((1, 224, 224, 3), np.float32))
    assert embedder.embed_arrays(np.zeros((0, 224, 224, 3), np.uint8)).shape == (0, 1280)
