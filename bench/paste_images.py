"""Copy-paste synthetic positives (issue 11): cut a boxed firearm out, paste it into another photo.

- `cut_firearm`: the firearm box (`boxes.csv`, fractions of width/height) plus a margin, as an
  RGBA cut-out whose alpha is 1 over the box and fades to 0 across the margin (a feathered
  rectangle: no hard seam, and no segmentation mask is needed);
- `paste_firearm`: the cut-out resized so its longest side is `scale` × the background's longest
  side (≤ the background: frame-filling at 1), optionally mirrored, its brightness pulled part of
  the way to the background region it covers, alpha-composited at a given place;
- `Placement` / `draw_placement`: the random choices of one copy (scale log-uniform between a
  tiny and a frame-filling size; position uniform, or near the centre for the "hard" copies
  pasted over the knife of a knife scene — the bench has no knife boxes, and its knives are
  mostly central).

Every function is pure given its `numpy` generator, so a set of copies is reproducible. The
copies are for training only: calibration and test stay real, unmodified photos.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

Box = tuple[float, float, float, float]  # x_min, y_min, x_max, y_max as fractions
MARGIN = 0.12  # the feathered band around the box, as a fraction of the box's size
TINY, FULL = 0.07, 1.0  # the cut-out's longest side vs the background's: the scale range
MAX_UPSCALE = 2.0  # a cut-out is never enlarged more than this (it would be a blur)


@dataclass(frozen=True)
class Placement:
    """The random choices of one pasted copy."""

    scale: float  # cut-out's longest side / background's longest side
    cx: float  # centre of the cut-out, fractions of the background's width and height
    cy: float
    flip: bool
    brightness: float  # 0: keep the cut-out's brightness, 1: match the background region's


def draw_placement(rng: np.random.Generator, *, hard: bool = False) -> Placement:
    """A random placement: scale log-uniform in [TINY, FULL]; hard: knife-sized, central."""
    if hard:
        scale = float(np.exp(rng.uniform(np.log(0.15), np.log(0.6))))
        cx, cy = (float(np.clip(rng.normal(0.5, 0.12), 0.0, 1.0)) for _ in range(2))
    else:
        scale = float(np.exp(rng.uniform(np.log(TINY), np.log(FULL))))
        cx, cy = float(rng.uniform()), float(rng.uniform())
    return Placement(scale, cx, cy, bool(rng.random() < 0.5), float(rng.uniform(0.0, 0.8)))


def _pixels(size: tuple[int, int], box: Box, margin: float) -> tuple[int, int, int, int]:
    """The box grown by `margin` of its own size on each side, in pixels, clipped to the photo."""
    w, h = size
    x0, y0, x1, y1 = box
    mx, my = (x1 - x0) * margin, (y1 - y0) * margin
    left, top = int(np.floor((x0 - mx) * w)), int(np.floor((y0 - my) * h))
    right, bottom = int(np.ceil((x1 + mx) * w)), int(np.ceil((y1 + my) * h))
    left, top = max(0, left), max(0, top)
    return left, top, min(w, max(right, left + 2)), min(h, max(bottom, top + 2))


def cut_firearm(photo: Image.Image, box: Box, margin: float = MARGIN) -> Image.Image:
    """RGBA cut-out of the box plus `margin`; alpha 255 over the box, fading out in the margin."""
    rgb = photo.convert("RGB")
    left, top, right, bottom = _pixels(rgb.size, box, margin)
    crop = rgb.crop((left, top, right, bottom))
    inner = _pixels(rgb.size, box, 0.0)
    alpha = Image.new("L", crop.size, 0)
    core = (inner[0] - left, inner[1] - top, inner[2] - left, inner[3] - top)
    alpha.paste(255, core)
    band = max(1.0, min(core[0], core[1], crop.width - core[2], crop.height - core[3]) / 2)
    alpha = alpha.filter(ImageFilter.GaussianBlur(band))
    # keep the box itself opaque: the blur would otherwise thin its edges
    alpha.paste(
        255, (core[0] + int(band), core[1] + int(band), core[2] - int(band), core[3] - int(band))
    )
    crop.putalpha(alpha)
    return crop


def _luma(pixels: np.ndarray, weights: np.ndarray | None = None) -> float:
    y = pixels[..., 0] * 0.299 + pixels[..., 1] * 0.587 + pixels[..., 2] * 0.114
    if weights is None:
        return float(y.mean())
    return float((y * weights).sum() / max(weights.sum(), 1e-6))


def paste_firearm(background: Image.Image, cutout: Image.Image, at: Placement) -> Image.Image:
    """`background` (RGB) with `cutout` (RGBA from `cut_firearm`) composited as `at` says."""
    bg = background.convert("RGB")
    bw, bh = bg.size
    cw, ch = cutout.size
    target = at.scale * max(bw, bh)
    factor = min(target / max(cw, ch), bw / cw, bh / ch, MAX_UPSCALE)  # fits inside the photo
    size = (max(2, round(cw * factor)), max(2, round(ch * factor)))
    piece = cutout.resize(size, Image.Resampling.LANCZOS)
    if at.flip:
        piece = piece.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    x = round(at.cx * bw - size[0] / 2)
    y = round(at.cy * bh - size[1] / 2)
    x, y = min(max(0, x), bw - size[0]), min(max(0, y), bh - size[1])
    rgba = np.asarray(piece, dtype=np.float32)  # (h, w, 4)
    alpha = rgba[..., 3] / 255.0
    under = np.asarray(bg.crop((x, y, x + size[0], y + size[1])), dtype=np.float32)
    gain = (_luma(under) + 8.0) / (_luma(rgba[..., :3], alpha) + 8.0)
    gain = float(np.clip(gain, 0.6, 1.6)) ** at.brightness
    rgb = np.clip(rgba[..., :3] * gain, 0, 255)
    mixed = rgb * alpha[..., None] + under * (1.0 - alpha[..., None])
    out = bg.copy()
    out.paste(Image.fromarray(mixed.round().astype(np.uint8)), (x, y))
    return out


def source_pixels(size: tuple[int, int], box: Box) -> float:
    """The box's longest side in pixels (to avoid enlarging a small box into a blur)."""
    x0, y0, x1, y1 = box
    return max((x1 - x0) * size[0], (y1 - y0) * size[1])
