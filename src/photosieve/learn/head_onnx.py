"""ONNX export of a fitted head: embeddings (N, D) float32 → logits (N,), to score without torch.

The batch workers and Ray actors run the head in onnxruntime next to the backbone, so they start
without importing torch. The graph is the head's own network (its standardisation included); an
`EnsembleHead` exports the mean of its members' logits, as its `decision_function` does. The
sigmoid stays in numpy, in float64 (`learn.logits.probabilities`), as `LogitScorer.score` does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from photosieve.learn.ensemble import EnsembleHead
from photosieve.learn.head import TorchHead
from photosieve.vision.onnx import write_graph

HEAD_INPUT = "embedding"
HEAD_OUTPUT = "logit"


class _Logit(nn.Module):
    """One fitted network's logit, (N, D) → (N,)."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)[:, 0]


class _MeanLogit(nn.Module):
    """The mean of its parts' logits, (N, D) → (N,); a part may itself be a mean (an ensemble
    of ensembles weighs each member ensemble once, as `EnsembleHead.decision_function` does)."""

    def __init__(self, parts: list[nn.Module]) -> None:
        super().__init__()
        self.parts = nn.ModuleList(parts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([part(x) for part in self.parts]).mean(dim=0)


def head_module(head: Any) -> nn.Module:
    """The fitted head as one module, embeddings (N, D) → logits (N,)."""
    if isinstance(head, EnsembleHead):
        head._check_fitted()
        return _MeanLogit([head_module(member) for member in head.members_])
    if isinstance(head, TorchHead):
        head._check_fitted()
        return _Logit(head.network_)
    raise ValueError(f"cannot export a {type(head).__name__} head to ONNX")


def export_head(head: Any, n_features: int, target: Path) -> Path:
    """Write the head's embeddings → logits graph to `target` (atomically)."""
    model = head_module(head).eval()
    example = torch.zeros((2, n_features), dtype=torch.float32)
    return write_graph(model, example, target, HEAD_INPUT, HEAD_OUTPUT)
