"""The onnxruntime session that runs an exported graph, without torch.

`vision.onnx` writes the graphs (it needs torch); this module only runs them, so a process that
scores and never exports (a batch worker, a Ray actor) starts without importing torch.
"""

from __future__ import annotations

import os
from pathlib import Path

import onnxruntime as ort

INPUT_NAME = "image"
OUTPUT_NAME = "embedding"


def available_cores() -> int:
    """CPU cores this process may run on (respects affinity / container limits)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def create_session(model: Path | bytes, *, threads: int | None = None) -> ort.InferenceSession:
    """An onnxruntime CPU session of a graph file (or its bytes): all graph optimisations, one
    intra-op thread per core."""
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads or available_cores()
    options.inter_op_num_threads = 1
    # No busy-waiting between ops: spinning threads would take the CPU from the decoders that
    # run beside inference (and from other processes); measured ~20% more images per CPU-second.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])
