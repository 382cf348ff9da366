"""The photo edits of the shortcut check (`shortcut_check.py`): hide the firearm, paste a watermark.

- `hide_boxes`: fill the firearm boxes (`boxes.csv`, fractions of width/height) with the photo's
  mean colour, or blur them heavily (a 12-px-radius Gaussian inside the box);
- `fill_random_boxes`: the control — boxes of the same sizes at random places that avoid the
  firearm boxes where they can, filled the same way: how much does a flat rectangle alone cost?
- `stock_watermark`: what the `granada-pistols` stock photos carry, drawn with Pillow's default
  font — faint tiled text ("shutterstock", "© stock", ...), a "© Can Stock Photo - csp…"
  caption strip and/or a round logo-like mark, each with its own seeded randomness.

Every edit returns a new RGB image of the same size; the randomness comes from the caller's
`numpy` generator, so a run is reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

Box = tuple[float, float, float, float]  # x_min, y_min, x_max, y_max as fractions
STOCK_WORDS = ("shutterstock", "© stock", "depositphotos", "dreamstime", "© istock")


def _pixels(image: Image.Image, box: Box) -> tuple[int, int, int, int]:
    w, h = image.size
    x0, y0, x1, y1 = box
    left, top = int(np.floor(x0 * w)), int(np.floor(y0 * h))
    right, bottom = int(np.ceil(x1 * w)), int(np.ceil(y1 * h))
    return max(0, left), max(0, top), min(w, max(right, left + 1)), min(h, max(bottom, top + 1))


def _fill(image: Image.Image, boxes: Sequence[Box], mode: str) -> Image.Image:
    out = image.convert("RGB").copy()
    if mode == "mean":
        mean = tuple(int(v) for v in np.asarray(out).reshape(-1, 3).mean(axis=0).round())
        draw = ImageDraw.Draw(out)
        for box in boxes:
            left, top, right, bottom = _pixels(out, box)
            draw.rectangle((left, top, right - 1, bottom - 1), fill=mean)
    elif mode == "blur":
        blurred = out.filter(ImageFilter.GaussianBlur(12))
        for box in boxes:
            region = _pixels(out, box)
            out.paste(blurred.crop(region), region[:2])
    else:
        raise ValueError(f"unknown fill mode {mode!r}; known: mean, blur")
    return out


def hide_boxes(image: Image.Image, boxes: Sequence[Box], mode: str = "mean") -> Image.Image:
    """The photo with every firearm box filled with its mean colour (or blurred: mode="blur")."""
    return _fill(image, boxes, mode)


def _overlap(a: Box, b: Box) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return w * h


def fill_random_boxes(
    image: Image.Image, boxes: Sequence[Box], rng: np.random.Generator, mode: str = "mean"
) -> Image.Image:
    """The control: boxes of the same sizes at random places (least overlap with the firearm
    boxes of 30 tries each), filled like `hide_boxes`."""
    moved: list[Box] = []
    for x0, y0, x1, y1 in boxes:
        bw, bh = x1 - x0, y1 - y0
        best: tuple[float, Box] | None = None
        for _ in range(30):
            nx, ny = rng.uniform(0, max(1e-9, 1 - bw)), rng.uniform(0, max(1e-9, 1 - bh))
            cand = (nx, ny, nx + bw, ny + bh)
            cost = sum(_overlap(cand, b) for b in boxes)
            if best is None or cost < best[0]:
                best = (cost, cand)
            if cost == 0:
                break
        assert best is not None
        moved.append(best[1])
    return _fill(image, moved, mode)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _tiled_text(size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """An RGBA layer of faint text repeated over the whole photo, rotated a little."""
    w, h = size
    word = str(rng.choice(STOCK_WORDS))
    font = _font(int(rng.integers(max(9, h // 16), max(10, h // 8))))
    grey = int(rng.integers(170, 256))
    alpha = int(rng.integers(70, 140))
    layer = Image.new("RGBA", (2 * w, 2 * h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    left, top, right, bottom = draw.textbbox((0, 0), word, font=font)
    step_x, step_y = int((right - left) * 1.6) + 4, int((bottom - top) * 3.0) + 4
    for row, y in enumerate(range(0, 2 * h, step_y)):
        for x in range(-(row % 2) * step_x // 2, 2 * w, step_x):
            draw.text((x, y), word, font=font, fill=(grey, grey, grey, alpha))
    layer = layer.rotate(float(rng.uniform(-30, 30)), resample=Image.Resampling.BILINEAR)
    return layer.crop((w // 2, h // 2, w // 2 + w, h // 2 + h))


def _caption(size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """A white strip at the bottom with a stock-agency credit line."""
    w, h = size
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    strip = max(8, h // 14)
    draw.rectangle((0, h - strip, w, h), fill=(255, 255, 255, 230))
    text = f"© Can Stock Photo - csp{int(rng.integers(1_000_000, 99_999_999))}"
    draw.text((4, h - strip), text, font=_font(max(7, strip - 2)), fill=(60, 60, 60, 255))
    return layer


def _logo(size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """A round, semi-transparent logo-like mark with a short word in it, at a random place."""
    w, h = size
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    r = int(rng.integers(max(6, min(w, h) // 10), max(7, min(w, h) // 5)))
    cx, cy = int(rng.integers(r, max(r + 1, w - r))), int(rng.integers(r, max(r + 1, h - r)))
    colour = (255, 255, 255, int(rng.integers(110, 190)))
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=colour, width=max(2, r // 6))
    draw.text((cx, cy), "stock", font=_font(max(7, r // 2)), fill=colour, anchor="mm")
    return layer


def stock_watermark(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """The photo with tiled stock-photo text, plus a caption strip and/or a logo mark."""
    base = image.convert("RGBA")
    layers = [_tiled_text(base.size, rng)]
    extra = int(rng.integers(0, 3))  # 0: caption, 1: logo, 2: both
    if extra in (0, 2):
        layers.append(_caption(base.size, rng))
    if extra in (1, 2):
        layers.append(_logo(base.size, rng))
    for layer in layers:
        base = Image.alpha_composite(base, layer)
    return base.convert("RGB")
