"""Vision stage: decoding photos, the pretrained backbone, ONNX inference, the embedding cache."""

# What the product trains and serves with unless told otherwise (a registered name in
# `vision.backbone`): max pooling keeps a small object's evidence that average pooling dilutes
# (bench/embedding_variants.py). Kept here so commands can name it without importing torch.
DEFAULT_BACKBONE = "efficientnet_lite0_avgmax"

__all__ = ["DEFAULT_BACKBONE"]
