"""Logits → P(offensive), without torch: the one sigmoid every scorer applies.

`LogitScorer.score` (the heads, in the service) and the batch workers (`batch.worker`, which run
the head as an ONNX graph) both turn logits into scores here, in float64, so a backlog scan and
the service give the same score to the same photo.
"""

from __future__ import annotations

import numpy as np


def probabilities(logits: np.ndarray) -> np.ndarray:
    """P(offensive) in [0, 1] from logits, in float64."""
    logits = np.asarray(logits, dtype=np.float64)
    return np.asarray(1.0 / (1.0 + np.exp(-logits)), dtype=np.float64)
