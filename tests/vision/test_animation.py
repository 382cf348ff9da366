"""Animated uploads: every sampled frame is decoded (a harmless first frame hides nothing), an
animation too large to check is refused, and tiny avatars are welcome."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from drawing import draw_photo
from photosieve.vision.decode import ImageDecodeError, decode


def _gif(frames: list[Image.Image]) -> bytes:
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=80, loop=0)
    return buffer.getvalue()


def test_later_frames_are_sampled_evenly_and_the_last_is_kept() -> None:
    frames = [draw_photo(i, shape="circle" if i == 9 else "square") for i in range(10)]
    decoded = decode(_gif(frames), max_frames=4)
    assert decoded.n_frames == 10 and len(decoded.all_frames) == 4  # frames 0, 3, 6, 9

    def distance(a: Image.Image, b: Image.Image) -> float:
        return float(np.abs(np.asarray(a, dtype=float) - np.asarray(b, dtype=float)).mean())

    # each decoded frame is (up to the GIF palette) the frame it claims to be: 0, 3, 6, 9
    for got, index in zip(decoded.all_frames, (0, 3, 6, 9), strict=True):
        own = distance(got, frames[index])
        assert all(own < distance(got, frames[j]) for j in range(10) if j != index)
    first_only = decode(_gif(frames))  # the default: first frame, as training decodes
    assert first_only.frames == () and first_only.n_frames == 1


def test_an_animation_too_large_to_check_is_refused() -> None:
    big = [Image.new("RGB", (2400, 2400), (i * 60, 0, 0)) for i in range(3)]
    with pytest.raises(ImageDecodeError) as info:
        decode(_gif(big), max_frames=16)  # 3 × 5.8 MP: over the 16 MP budget
    assert info.value.reason == "too_many_frames"
    assert decode(_gif(big[:2]), max_frames=16).n_frames == 2  # 2 × 2400² is within it


@pytest.mark.parametrize("side", [32, 48, 64, 128])
@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP"])
def test_tiny_avatars_are_accepted(side: int, fmt: str) -> None:
    buffer = io.BytesIO()
    draw_photo(side, size=(side, side)).save(buffer, fmt)
    decoded = decode(buffer.getvalue(), draft_size=224)
    assert decoded.image.size == (side, side) and decoded.image.mode == "RGB"
