"""The per-photo step of batch scoring: decode and resize for the model, or say why not.

Kept free of torch and onnxruntime so the local engine's decoding processes start light.
"""

from __future__ import annotations

import numpy as np

from photosieve.vision.preprocess import ImageDecodeError, PreprocessConfig, load_for_model


def decode_for_model(path: str, cfg: PreprocessConfig) -> np.ndarray | str:
    """The uint8 model input (H, W, 3) of one photo, or why the decoder cannot read it."""
    try:
        return load_for_model(path, cfg)
    except ImageDecodeError as exc:
        return f"{exc.reason}: {exc}"
