"""The per-photo step of batch scoring: decode and resize for the model, or say why not.

An animation gives every sampled frame (`vision.decode.ANIMATION_FRAMES`), so the batch scan
decides like the service: the most offensive-looking frame wins. Kept free of torch and
onnxruntime so the local engine's decoding processes start light.
"""

from __future__ import annotations

import numpy as np

from photosieve.vision.decode import ANIMATION_FRAMES, ImageDecodeError, decode
from photosieve.vision.preprocess import PreprocessConfig, resize_for_model


def decode_for_model(path: str, cfg: PreprocessConfig) -> list[np.ndarray] | str:
    """The uint8 model inputs (H, W, 3) of a photo's frames, or why the decoder cannot read it."""
    try:
        decoded = decode(path, draft_size=cfg.input_size, max_frames=ANIMATION_FRAMES)
    except ImageDecodeError as exc:
        return f"{exc.reason}: {exc}"
    return [np.asarray(resize_for_model(f, cfg), dtype=np.uint8) for f in decoded.all_frames]
