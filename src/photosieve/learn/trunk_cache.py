"""The cache of Lite0's frozen trunk maps for fine-tuning: V views per photo, fp16, one memmap.

`build_trunk_cache(paths, folder, views=V)` writes `<folder>/trunk.f16`, an (N, V, 112, 14, 14)
float16 memmap (≈ 44 kB per photo and view), and `trunk.json` (shape, seed, the paths' digest,
rows done so far): an interrupted build resumes where it stopped, a finished one is reused.

View 0 is the photo exactly as served (`vision.preprocess.load_for_model`: JPEG draft decoding,
squash resize to 224 px; then the ONNX graph's own normalisation, `UInt8Features.normalise`).
Views 1..V−1 are training augmentations of the full-resolution decode: a random resized crop
(`CROP_SCALE` of the area, aspect 3/4..4/3), squashed to 224 px like the served path, a
horizontal flip (p = ½) and a small colour jitter (brightness, contrast, saturation ±`JITTER`).
The trunk runs as an ONNX graph (`export_trunk`) in onnxruntime. Each view's randomness
comes from (seed, row, view), so the cache is deterministic.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from photosieve.learn.finetune import TRUNK_CHANNELS, TRUNK_STRIDE, Trunk
from photosieve.vision.backbone import EfficientNetLite
from photosieve.vision.onnx import OPSET, UInt8Features, create_session
from photosieve.vision.preprocess import PreprocessConfig, load_for_model, load_image
from photosieve.vision.preprocess import resize_for_model as squash

CROP_SCALE = (0.5, 1.0)  # share of the photo's area a crop keeps (a small gun must survive)
JITTER = 0.2
MAPS_FILE, META_FILE = "trunk.f16", "trunk.json"
_GREY = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def augment(image: Image.Image, rng: np.random.Generator, cfg: PreprocessConfig) -> np.ndarray:
    """One augmented uint8 (S, S, 3) view of an RGB photo: crop, squash, flip, colour jitter."""
    w, h = image.size
    box = (0, 0, w, h)
    for _ in range(10):
        area = rng.uniform(*CROP_SCALE) * w * h
        ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        cw, ch = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
        if 0 < cw <= w and 0 < ch <= h:
            x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            box = (x0, y0, x0 + cw, y0 + ch)
            break
    x = np.asarray(squash(image.crop(box), cfg), dtype=np.float32)  # (S, S, 3)
    if rng.random() < 0.5:
        x = x[:, ::-1]
    b, c, s = 1.0 + rng.uniform(-JITTER, JITTER, size=3)
    x = x * b
    x = (x - x.mean()) * c + x.mean()
    grey = (x @ _GREY)[..., None]
    x = (x - grey) * s + grey
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def photo_views(path: Path, row: int, views: int, seed: int, cfg: PreprocessConfig) -> np.ndarray:
    """(views, S, S, 3) uint8: view 0 as served, then the augmented views."""
    out = np.empty((views, cfg.input_size, cfg.input_size, 3), dtype=np.uint8)
    out[0] = load_for_model(path, cfg)
    if views > 1:
        image = load_image(path)
        for v in range(1, views):
            out[v] = augment(image, np.random.default_rng([seed, row, v]), cfg)
    return out


class UInt8Trunk(nn.Module):
    """uint8 NHWC photos → the served normalisation → trunk map (N, 112, S/16, S/16)."""

    def __init__(self, backbone: EfficientNetLite) -> None:
        super().__init__()
        self.wrap = UInt8Features(backbone)
        self.trunk = Trunk(backbone)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.trunk(self.wrap.normalise(image))


def export_trunk(backbone: EfficientNetLite, target: Path) -> Path:
    """The trunk as an ONNX graph (onnxruntime runs it ≈ 9× faster than PyTorch on the CPU)."""
    size = backbone.config.preprocess.input_size
    example = torch.zeros((2, size, size, 3), dtype=torch.uint8)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            UInt8Trunk(backbone).eval(),
            (example,),
            str(target),
            input_names=["image"],
            output_names=["map"],
            dynamic_axes={"image": {0: "batch"}, "map": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
    return target


def _digest(paths: Sequence[Path]) -> str:
    return hashlib.sha256("\n".join(str(p) for p in paths).encode()).hexdigest()[:16]


def open_trunk_cache(folder: Path) -> np.memmap:
    """The finished cache in `folder`, read-only (raises if it is missing or unfinished)."""
    meta = json.loads((Path(folder) / META_FILE).read_text())
    if meta["done"] != meta["shape"][0]:
        raise ValueError(f"{folder}: trunk cache unfinished ({meta['done']}/{meta['shape'][0]})")
    return np.memmap(Path(folder) / MAPS_FILE, np.float16, "r", shape=tuple(meta["shape"]))


def build_trunk_cache(
    paths: Sequence[Path],
    folder: Path,
    backbone: EfficientNetLite,
    *,
    views: int = 3,
    seed: int = 0,
    batch_size: int = 32,
    on_batch: Callable[[int, int], None] | None = None,
) -> np.memmap:
    """Trunk maps (N, views, 112, S/16, S/16) float16 of the photos; resumes, reuses if done."""
    if views < 1:
        raise ValueError(f"views must be ≥ 1, got {views}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = backbone.config.preprocess
    side = cfg.input_size // TRUNK_STRIDE
    shape = (len(paths), views, TRUNK_CHANNELS, side, side)
    meta_path = folder / META_FILE
    key = {
        "shape": list(shape),
        "seed": seed,
        "paths": _digest(paths),
        "backbone": backbone.config.id,
    }
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    fresh = any(meta.get(k) != v for k, v in key.items())
    done = 0 if fresh else int(meta["done"])
    maps = np.memmap(folder / MAPS_FILE, np.float16, "w+" if fresh else "r+", shape=shape)
    session = create_session(export_trunk(backbone, folder / "trunk.onnx"))

    def load(i: int) -> np.ndarray:
        return photo_views(Path(paths[i]), i, views, seed, cfg)

    starts = list(range(done, len(paths), batch_size))
    with ThreadPoolExecutor(2) as pool:
        pending = [pool.map(load, range(s, min(s + batch_size, len(paths)))) for s in starts[:2]]
        for n, start in enumerate(starts):
            batch = np.stack(list(pending.pop(0)))  # (B, V, S, S, 3)
            if n + 2 < len(starts):
                nxt = starts[n + 2]
                pending.append(pool.map(load, range(nxt, min(nxt + batch_size, len(paths)))))
            (out,) = session.run(None, {"image": batch.reshape(-1, *batch.shape[2:])})
            out = np.asarray(out).astype(np.float16)
            maps[start : start + len(batch)] = out.reshape(len(batch), views, *out.shape[1:])
            maps.flush()
            done = start + len(batch)
            meta_path.write_text(json.dumps(key | {"done": done}))
            if on_batch is not None:
                on_batch(done, len(paths))
    if fresh and not starts:  # no photos at all
        meta_path.write_text(json.dumps(key | {"done": 0}))
    del maps
    return open_trunk_cache(folder)
