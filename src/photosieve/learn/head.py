"""The classifier heads on frozen backbone embeddings (saving and loading: `learn.persist`).

`MLPHead` (ReLU hidden layers by default) and `LogisticHead` (no hidden layer: the simple
baseline) share one training loop (`learn.loop`) and follow scikit-learn's estimator contract:
`__init__` stores parameters, `fit` returns `self`, learned attributes end in `_`, and scoring
before `fit` raises `NotFittedError`. Inputs are standardised with the training set's mean and
std, which are part of the network's state, so a saved head needs nothing else to score.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from photosieve.learn.grads import warn_if_vanishing
from photosieve.learn.logits import probabilities
from photosieve.learn.loop import train_network
from photosieve.learn.metrics import as_binary_labels

# The activation registry: one name → one module factory. Unknown names list the known ones.
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
}


def make_activation(name: str) -> nn.Module:
    """A fresh activation module by registry name."""
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; known: {', '.join(sorted(ACTIVATIONS))}"
        ) from None


class Standardize(nn.Module):
    """(x − mean) / std with the training set's statistics kept as buffers (saved with weights)."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, n_features: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, D) → (N, D)
        return (x - self.mean) / self.std

    @torch.no_grad()
    def set_from(self, X: torch.Tensor) -> None:
        """Take the mean and std of embeddings `X` (N, D); a constant feature keeps std 1."""
        std = X.std(dim=0)
        self.mean.copy_(X.mean(dim=0))
        self.std.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))


def build_network(
    n_features: int, hidden: Sequence[int], activation: str, dropout: float
) -> nn.Sequential:
    """Standardize → [Linear → activation → Dropout] × len(hidden) → Linear(·, 1) (a logit)."""
    layers: list[nn.Module] = [Standardize(n_features)]
    width = n_features
    for h in hidden:
        layers += [nn.Linear(width, h), make_activation(activation)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = h
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers)


class LogitScorer:
    """`score` and `predict_proba` of a head from its `decision_function` (logits)."""

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def score(self, X: np.ndarray) -> np.ndarray:
        """P(offensive) in [0, 1] for embeddings (N, D); higher = more likely offensive."""
        return probabilities(self.decision_function(X))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """(N, 2): columns P(ok), P(offensive), as scikit-learn classifiers."""
        p = self.score(X)
        return np.column_stack([1.0 - p, p])


class TorchHead(LogitScorer):
    """Shared estimator plumbing: parameters, validation, scoring; training is `learn.loop`."""

    _param_names: tuple[str, ...] = (
        "hidden",
        "activation",
        "dropout",
        "epochs",
        "lr",
        "weight_decay",
        "batch_size",
        "imbalance",
        "loss",
        "focal_gamma",
        "top_push",
        "top_push_k",
        "top_push_margin",
        "patience",
        "seed",
        "monitor",
    )

    def __init__(
        self,
        hidden: Sequence[int] = (256,),
        activation: str = "relu",
        dropout: float = 0.2,
        *,
        epochs: int = 60,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        batch_size: int = 128,
        imbalance: str = "weighted",
        loss: str = "bce",
        focal_gamma: float = 2.0,
        top_push: float = 0.0,
        top_push_k: int = 8,
        top_push_margin: float = 1.0,
        patience: int = 15,
        seed: int = 0,
        monitor: str = "high_recall",
    ) -> None:
        self.hidden = tuple(int(h) for h in hidden)
        self.activation = activation
        self.dropout = dropout
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.imbalance = imbalance
        self.loss = loss
        self.focal_gamma = focal_gamma
        self.top_push = top_push  # weight of the top-push term (learn.loop); 0 = plain loss
        self.top_push_k = top_push_k
        self.top_push_margin = top_push_margin
        self.patience = patience
        self.seed = seed
        self.monitor = monitor

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor parameters (JSON-able), as scikit-learn's `get_params`."""
        params = {name: getattr(self, name) for name in self._param_names}
        params["hidden"] = list(params["hidden"])
        return params

    def set_params(self, **params: Any) -> TorchHead:
        for name, value in params.items():
            if name not in self._param_names:
                raise ValueError(f"unknown parameter {name!r}; known: {self._param_names}")
            setattr(self, name, tuple(value) if name == "hidden" else value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def _check_params(self) -> None:
        make_activation(self.activation)
        if any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden layer widths must be ≥ 1, got {self.hidden}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        _check_imbalance(self.imbalance)
        if self.monitor not in ("review_rate", "high_recall", "ap"):
            raise ValueError(
                f"monitor must be 'review_rate', 'high_recall' or 'ap', got {self.monitor!r}"
            )
        if self.loss not in ("bce", "focal"):
            raise ValueError(f"loss must be 'bce' or 'focal', got {self.loss!r}")
        if self.top_push < 0 or self.top_push_k < 1:
            raise ValueError(
                f"top_push must be ≥ 0 and top_push_k ≥ 1, got {self.top_push}, {self.top_push_k}"
            )
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("epochs and batch_size must be ≥ 1 and lr > 0")

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        *,
        X_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
        on_epoch: Callable[[int, dict[str, Any]], None] | None = None,
    ) -> TorchHead:
        """Train on (X, y); with (X_val, y_val), keep the epoch best on validation."""
        self._check_params()
        X_arr, y_arr = _check_training_data(X, y)
        val = None
        if X_val is not None and y_val is not None:
            val = (_check_X(X_val, n_features=X_arr.shape[1]), as_binary_labels(y_val))
            if val[0].shape[0] != val[1].shape[0]:
                raise ValueError("X_val and y_val have different lengths")
            if val[1].sum() == 0:
                raise ValueError("y_val has no positives: early stopping needs some")
        network = build_network(X_arr.shape[1], self.hidden, self.activation, self.dropout)
        result = train_network(network, X_arr, y_arr, val=val, cfg=self, on_epoch=on_epoch)
        self.network_ = network.eval()
        self.n_features_in_ = X_arr.shape[1]
        self.history_ = result.history
        self.best_epoch_ = result.best_epoch
        self.gradient_health_ = result.gradient_health
        warn_if_vanishing(self.gradient_health_)
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "network_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet; call fit(X, y) before scoring"
            )

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Logits (N,) for embeddings (N, D)."""
        self._check_fitted()
        X_arr = _check_X(X, n_features=self.n_features_in_)
        with torch.no_grad():
            return self.network_(torch.from_numpy(X_arr))[:, 0].double().numpy()


class MLPHead(TorchHead):
    """A multi-layer perceptron head (ReLU by default): the product's model."""


class LogisticHead(TorchHead):
    """Logistic regression on standardised embeddings (no hidden layer): the baseline.

    Fitted exactly (L-BFGS, scikit-learn) rather than by SGD: the problem is convex, so the
    baseline is the true optimum. The weights are then copied into the same network as
    `MLPHead`'s, so it scores, saves and loads the same way.
    """

    _param_names = ("C", "imbalance", "max_iter")
    hidden: tuple[int, ...] = ()
    activation = "relu"
    dropout = 0.0

    def __init__(self, *, C: float = 1.0, imbalance: str = "weighted", max_iter: int = 2000):
        self.C = C
        self.imbalance = imbalance
        self.max_iter = max_iter

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._param_names}

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        *,
        X_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
        on_epoch: Callable[[int, dict[str, Any]], None] | None = None,
    ) -> LogisticHead:
        """Fit on (X, y); validation data is accepted for interface parity and not used."""
        _check_imbalance(self.imbalance)
        if self.C <= 0:
            raise ValueError(f"C must be > 0, got {self.C}")
        X_arr, y_arr = _check_training_data(X, y)
        network = build_network(X_arr.shape[1], (), "relu", 0.0)
        mean = X_arr.mean(axis=0)
        std = X_arr.std(axis=0)
        std = np.where(std > 1e-6, std, 1.0).astype(np.float32)
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(
            C=self.C,
            class_weight=None if self.imbalance == "none" else "balanced",
            max_iter=self.max_iter,
        ).fit((X_arr - mean) / std, y_arr)
        standardize, linear = network[0], network[1]
        assert isinstance(standardize, Standardize) and isinstance(linear, nn.Linear)
        with torch.no_grad():
            standardize.mean.copy_(torch.from_numpy(mean))
            standardize.std.copy_(torch.from_numpy(std))
            linear.weight.copy_(torch.from_numpy(model.coef_.astype(np.float32)))
            linear.bias.copy_(torch.from_numpy(model.intercept_.astype(np.float32)))
        self.network_ = network.eval()
        self.n_features_in_ = X_arr.shape[1]
        self.history_: list[dict[str, Any]] = []
        self.best_epoch_ = 0
        self.gradient_health_: dict[str, Any] = {}
        return self


def _check_X(X: np.ndarray, n_features: int | None = None) -> np.ndarray:
    arr = np.ascontiguousarray(X, dtype=np.float32)
    if arr.ndim != 2:
        raise ValueError(f"embeddings must be a 2-D array (N, D), got shape {arr.shape}")
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(f"expected {n_features} features per row, got {arr.shape[1]}")
    if not np.isfinite(arr).all():
        raise ValueError("embeddings contain NaN or infinite values")
    return arr


def _check_training_data(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings and 0/1 labels of a training set: same length, both classes present."""
    X_arr = _check_X(X)
    y_arr = as_binary_labels(y)
    if y_arr.shape[0] != X_arr.shape[0]:
        raise ValueError(f"X has {X_arr.shape[0]} rows but y has {y_arr.shape[0]} labels")
    if y_arr.min() == y_arr.max():
        raise ValueError("training needs both classes (offensive and ok) in y")
    return X_arr, y_arr


def _check_imbalance(imbalance: str) -> None:
    if imbalance not in ("weighted", "balanced", "none"):
        raise ValueError(f"imbalance must be 'weighted', 'balanced' or 'none', got {imbalance!r}")
