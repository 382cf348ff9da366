"""Logits → P(offensive), without torch: the one sigmoid every scorer applies, and the one
composite score of a two-stage cascade.

`LogitScorer.score` (the heads, in the service) and the batch workers (`batch.worker`, which run
the head as an ONNX graph) both turn logits into scores here, in float64, so a backlog scan and
the service give the same score to the same photo; both score a cascade through `gated_scores`
(`bundle.cascade_scores` in the service), for the same reason.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def probabilities(logits: np.ndarray) -> np.ndarray:
    """P(offensive) in [0, 1] from logits, in float64."""
    logits = np.asarray(logits, dtype=np.float64)
    with np.errstate(over="ignore"):  # exp(−x) → inf for x ≪ 0 gives exactly 0, as it should
        return np.asarray(1.0 / (1.0 + np.exp(-logits)), dtype=np.float64)


def gated_scores(
    first: np.ndarray, gate: float, second: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """A cascade's composite scores (N,), float64: 0 where the first stage's score is below
    `gate` (approved without the second look), else `second(rows)` — the second stage's scores
    of those rows, asked once and only when some photo passes the gate."""
    out = np.zeros(len(first), dtype=np.float64)
    rows = np.flatnonzero(np.asarray(first) >= gate)
    if len(rows):
        out[rows] = np.asarray(second(rows), dtype=np.float64)
    return out
