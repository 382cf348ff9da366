"""A head exported to ONNX scores like the head itself (what batch workers run without torch)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from import_check import loaded_on_import
from photosieve.learn.ensemble import EnsembleHead
from photosieve.learn.head import LogisticHead, MLPHead
from photosieve.learn.head_onnx import export_head
from photosieve.learn.logits import probabilities
from photosieve.vision.runtime import create_session


def _data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(240, 24)).astype(np.float32)
    y = (X[:, 0] + 0.5 * X[:, 1] + rng.normal(scale=0.5, size=240) > 1.2).astype(int)
    return X, y


def _heads() -> dict[str, Any]:
    X, y = _data()
    mlp = MLPHead(hidden=(16,), epochs=5, seed=1).fit(X, y)
    pair = EnsembleHead.from_members([mlp, MLPHead(hidden=(8,), epochs=5, seed=2).fit(X, y)])
    return {
        "mlp": mlp,
        "logistic": LogisticHead().fit(X, y),
        "ensemble": pair,
        # a head beside an ensemble (a tuned bundle's "both"): each weighs half, not 1/3 a network
        "nested": EnsembleHead.from_members([LogisticHead().fit(X, y), pair]),
    }


@pytest.mark.parametrize("kind", ["mlp", "logistic", "ensemble", "nested"])
def test_the_onnx_head_scores_like_the_torch_head(kind: str, tmp_path: Path) -> None:
    head = _heads()[kind]
    X, _ = _data(seed=5)  # photos it never saw
    session = create_session(export_head(head, X.shape[1], tmp_path / "head.onnx"), threads=1)
    (logits,) = session.run(None, {session.get_inputs()[0].name: X})
    assert logits.shape == (len(X),)
    np.testing.assert_allclose(probabilities(logits), head.score(X), rtol=1e-5, atol=1e-6)


def test_a_batch_worker_module_imports_no_torch() -> None:
    assert loaded_on_import("photosieve.batch.worker", {"torch", "sklearn"}) == []
