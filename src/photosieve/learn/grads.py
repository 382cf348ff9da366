"""Gradient health: per-layer gradient norms during training and the vanishing-gradient check.

A deep stack of saturating activations (sigmoid) shrinks the gradient on its way back to the
first layers, which then barely learn. We record the L2 norm of each linear layer's weight
gradient per batch, average it per epoch, and flag a run whose first layer's norm is orders of
magnitude below the last layer's.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

# First-layer norm this many times below the last layer's = vanishing gradients.
VANISHING_RATIO = 100.0


class VanishingGradientWarning(UserWarning):
    """The first layer's gradients are orders of magnitude smaller than the last layer's."""


def linear_layers(model: nn.Module) -> list[nn.Linear]:
    """The model's linear layers, input side first."""
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


@dataclass
class GradientRecorder:
    """Accumulates per-layer weight-gradient norms over batches; one row per epoch."""

    layers: list[nn.Linear]
    epochs: list[list[float]] = field(default_factory=list)
    _sums: list[float] = field(default_factory=list)
    _batches: int = 0

    def after_backward(self) -> None:
        """Call after `loss.backward()` (before the optimiser step)."""
        if not self._sums:
            self._sums = [0.0] * len(self.layers)
        with torch.no_grad():
            for i, layer in enumerate(self.layers):
                grad = layer.weight.grad
                if grad is not None:
                    self._sums[i] += float(grad.norm())
        self._batches += 1

    def end_epoch(self) -> list[float]:
        """Close the epoch: its mean per-layer norms (input side first)."""
        row = [s / max(self._batches, 1) for s in self._sums] or [0.0] * len(self.layers)
        self.epochs.append(row)
        self._sums, self._batches = [], 0
        return row


def gradient_health(
    epoch_norms: list[list[float]], *, ratio_limit: float = VANISHING_RATIO
) -> dict[str, Any]:
    """Summary of recorded norms: per-layer means, first/last ratio and the vanishing flag.

    The check uses the first epoch, when an untrained deep sigmoid stack is at its worst and
    when it matters most (layers that get no gradient early never catch up).
    """
    if not epoch_norms or not epoch_norms[0]:
        return {"per_layer": [], "first_to_last": None, "vanishing": False, "epochs": 0}
    n_layers = len(epoch_norms[0])
    per_layer = [sum(row[i] for row in epoch_norms) / len(epoch_norms) for i in range(n_layers)]
    first, last = epoch_norms[0][0], epoch_norms[0][-1]
    ratio = first / last if last > 0 else float("inf")
    return {
        "per_layer": per_layer,
        "first_epoch": list(epoch_norms[0]),
        "first_to_last": ratio,
        "vanishing": bool(n_layers > 1 and ratio * ratio_limit < 1.0),
        "ratio_limit": ratio_limit,
        "epochs": len(epoch_norms),
    }


def warn_if_vanishing(health: dict[str, Any]) -> None:
    """Emit `VanishingGradientWarning` when `health` says the first layer barely learns."""
    if health.get("vanishing"):
        warnings.warn(
            f"vanishing gradients: the first layer's gradient norm is "
            f"{health['first_to_last']:.2e} × the last layer's (limit 1/{health['ratio_limit']:g});"
            " use ReLU/GELU activations or a shallower head",
            VanishingGradientWarning,
            stacklevel=3,
        )
