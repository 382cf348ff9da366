"""Vision stage: decoding photos, the pretrained backbone, ONNX inference and the embedding cache."""
