"""Gradient health: the vanishing-gradient warning fires for a deep sigmoid head, not for ReLU."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from photosieve.learn.grads import VanishingGradientWarning, gradient_health
from photosieve.learn.head import MLPHead


def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(256, 32)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 1).astype(np.int64)
    return X, y


def test_deep_sigmoid_head_warns_of_vanishing_gradients() -> None:
    X, y = data()
    head = MLPHead((32,) * 8, "sigmoid", 0.0, epochs=2, batch_size=64)
    with pytest.warns(VanishingGradientWarning, match="vanishing gradients"):
        head.fit(X, y)
    health = head.gradient_health_
    assert health["vanishing"] is True
    assert health["first_to_last"] < 1e-2
    assert len(health["per_layer"]) == 9  # 8 hidden + output


def test_deep_relu_head_does_not_warn() -> None:
    X, y = data()
    head = MLPHead((32,) * 8, "relu", 0.0, epochs=2, batch_size=64)
    with warnings.catch_warnings():
        warnings.simplefilter("error", VanishingGradientWarning)
        head.fit(X, y)
    assert head.gradient_health_["vanishing"] is False
    assert head.gradient_health_["first_to_last"] > 1e-1


def test_gradient_health_summary() -> None:
    health = gradient_health([[1e-4, 1e-2, 1.0], [1e-3, 1e-2, 1.0]])
    assert health["vanishing"] is True
    assert health["first_to_last"] == pytest.approx(1e-4)
    assert health["per_layer"][0] == pytest.approx(5.5e-4)
    assert gradient_health([])["vanishing"] is False
