"""Deterministic Pillow-drawn photos for tests (importable from every test folder)."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def draw_photo(
    seed: int, size: tuple[int, int] = (96, 80), *, shape: str = "circle"
) -> Image.Image:
    """A small deterministic RGB picture: noisy background plus one coloured shape."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, size=3)
    noise = rng.normal(0, 12, size=(size[1], size[0], 3))
    pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    draw = ImageDraw.Draw(image)
    w, h = size
    box = (w // 5, h // 5, 4 * w // 5, 4 * h // 5)
    colour = tuple(int(c) for c in rng.integers(0, 255, size=3))
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    else:
        draw.rectangle(box, fill=colour)
    return image


def encode(image: Image.Image, fmt: str = "JPEG", **kwargs: object) -> bytes:
    """Encode a PIL image to bytes in the given format."""
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def striped_jpeg(seed: int, *, size: tuple[int, int], shape: str = "circle") -> bytes:
    """A distinct drawn JPEG: noisy background, one shape and seed-dependent white stripes.

    The stripes move the perceptual hash, so photos of different seeds are no near-duplicates.
    """
    rng = np.random.default_rng(seed)
    pixels = np.clip(rng.integers(0, 255, 3) + rng.normal(0, 20, (size[1], size[0], 3)), 0, 255)
    image = Image.fromarray(pixels.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    w, h = size
    box = (w // 5, h // 5, 4 * w // 5, 4 * h // 5)
    colour = tuple(int(c) for c in rng.integers(0, 255, 3))
    (draw.ellipse if shape == "circle" else draw.rectangle)(box, fill=colour)
    for i in range(int(rng.integers(2, 6))):
        x = int(rng.integers(0, w))
        draw.line((x, 0, (x * 7 + i * 13) % w, h), fill=(255, 255, 255), width=3)
    return encode(image, "JPEG", quality=90)


def labelled_folder(
    root: Path, *, offensive: int, ok: int, size: tuple[int, int] = (96, 80)
) -> Path:
    """`root/offensive/*.jpg` (rectangles) and `root/ok/*.jpg` (circles): distinct drawn photos
    in the folder layout `photosieve ingest` reads."""
    for label, shape, count in (("offensive", "rectangle", offensive), ("ok", "circle", ok)):
        folder = root / label
        folder.mkdir(parents=True)
        for i in range(count):
            seed = i if label == "ok" else 10_000 + i
            (folder / f"{i:03d}.jpg").write_bytes(striped_jpeg(seed, size=size, shape=shape))
    return root


def drawn_split_manifest(
    root: Path,
    n: int,
    splits: Sequence[str],
    *,
    offensive: Callable[[int], bool],
    size: Callable[[int], tuple[int, int]],
    quality: int = 75,
) -> Path:
    """`root/split.csv`, a split manifest of `n` drawn JPEGs in `root` (photo i: a circle when
    `offensive(i)` — labelled offensive — else a square, of `size(i)`; split `splits[i % len]`),
    with the columns the train stage reads."""
    import pandas as pd

    rows = []
    for i in range(n):
        shape = "circle" if offensive(i) else "square"
        path = root / f"p{i:03d}.jpg"
        path.write_bytes(encode(draw_photo(i, size(i), shape=shape), "JPEG", quality=quality))
        rows.append(
            {"path": str(path), "label": "offensive" if shape == "circle" else "ok",
             "source": "primary", "sha256": f"{i:064x}", "phash": "0" * 16, "group_id": i,
             "split": splits[i % len(splits)]}
        )  # fmt: skip
    target = root / "split.csv"
    pd.DataFrame(rows).to_csv(target, index=False)
    return target
