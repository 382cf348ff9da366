"""Vision stage: decoding photos, the pretrained backbone, ONNX inference, the embedding cache."""

from photosieve.config import DEFAULT_BACKBONE

__all__ = ["DEFAULT_BACKBONE"]
