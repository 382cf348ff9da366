"""Vision stage: decoding photos, the pretrained backbone, ONNX inference, embedding cache."""
