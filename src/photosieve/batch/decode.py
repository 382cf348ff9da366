"""The per-photo step of batch scoring: decode and resize for the model, or say why not.

An animation gives every sampled frame (`vision.decode.ANIMATION_FRAMES`), so the batch scan
decides like the service: the most offensive-looking frame wins. Kept free of torch and
onnxruntime so the local engine's decoding processes start light.
"""

from __future__ import annotations

import ctypes
import signal
import sys

import numpy as np
from PIL import Image

from photosieve.vision.decode import ANIMATION_FRAMES, ImageDecodeError, decode
from photosieve.vision.preprocess import PreprocessConfig, resize_for_model

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent() -> None:
    """Decoding-worker initializer: end this worker when the scoring process dies, even by
    SIGKILL, so a killed run leaves no orphan processes behind (Linux `PR_SET_PDEATHSIG`)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def decode_frames(path: str, cfg: PreprocessConfig) -> list[Image.Image] | str:
    """A photo's sampled frames decoded for `cfg`, or why the decoder cannot read it."""
    try:
        decoded = decode(path, draft_size=cfg.decode_size, max_frames=ANIMATION_FRAMES)
    except ImageDecodeError as exc:
        return f"{exc.reason}: {exc}"
    return list(decoded.all_frames)


def model_input(frame: Image.Image, cfg: PreprocessConfig) -> np.ndarray:
    """One decoded frame resized for `cfg`: the uint8 (H, W, 3) input of its ONNX graph."""
    return np.asarray(resize_for_model(frame, cfg), dtype=np.uint8)


def decode_for_model(path: str, cfg: PreprocessConfig) -> list[np.ndarray] | str:
    """The uint8 model inputs (H, W, 3) of a photo's frames, or why the decoder cannot read it."""
    frames = decode_frames(path, cfg)
    if isinstance(frames, str):
        return frames
    return [model_input(f, cfg) for f in frames]


def decode_batch(paths: list[str], cfg: PreprocessConfig) -> list[list[np.ndarray] | str]:
    """`decode_for_model` of each path: one worker round trip for a whole batch."""
    return [decode_for_model(p, cfg) for p in paths]
