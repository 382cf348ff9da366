"""How a fitted head is saved and loaded: a `.pt` file of a JSON spec and tensors.

Covers `MLPHead`, `LogisticHead` and `EnsembleHead` (members saved recursively); loading uses
`torch.load(weights_only=True)`, so a head file can carry no pickled code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from photosieve.learn.ensemble import EnsembleHead
from photosieve.learn.head import LogisticHead, MLPHead, TorchHead, build_network

HEAD_FORMAT = 1

HEAD_CLASSES: dict[str, type[TorchHead]] = {"MLPHead": MLPHead, "LogisticHead": LogisticHead}


def head_to_payload(head: Any) -> dict[str, Any]:
    """A `torch.save`-able dict of plain types and tensors (loadable with weights_only=True)."""
    if isinstance(head, EnsembleHead):
        head._check_fitted()
        spec = {"class": "EnsembleHead", "format": HEAD_FORMAT}
        return {"spec": json.dumps(spec), "members": [head_to_payload(m) for m in head.members_]}
    if not isinstance(head, TorchHead):
        raise ValueError(
            f"cannot save a {type(head).__name__}; save_head supports {sorted(HEAD_CLASSES)}"
            " and EnsembleHead"
        )
    head._check_fitted()
    spec = {
        "class": type(head).__name__,
        "format": HEAD_FORMAT,
        "params": head.get_params(),
        "n_features_in": head.n_features_in_,
        "best_epoch": head.best_epoch_,
        "gradient_health": head.gradient_health_,
    }
    return {"spec": json.dumps(spec), "state": head.network_.state_dict()}


def head_from_payload(payload: dict[str, Any]) -> Any:
    """Inverse of `head_to_payload`."""
    spec = json.loads(payload["spec"])
    if spec.get("format") != HEAD_FORMAT:
        raise ValueError(f"head format {spec.get('format')!r} is not supported; retrain")
    if spec["class"] == "EnsembleHead":
        return EnsembleHead.from_members([head_from_payload(m) for m in payload["members"]])
    cls = HEAD_CLASSES.get(spec["class"])
    if cls is None:
        raise ValueError(f"unknown head class {spec['class']!r}; known: {sorted(HEAD_CLASSES)}")
    head = cls(**spec["params"])
    network = build_network(spec["n_features_in"], head.hidden, head.activation, head.dropout)
    network.load_state_dict(payload["state"])
    head.network_ = network.eval()
    head.n_features_in_ = spec["n_features_in"]
    head.history_ = []
    head.best_epoch_ = spec.get("best_epoch", 0)
    head.gradient_health_ = spec.get("gradient_health", {})
    return head


def save_head(head: Any, path: str | Path) -> Path:
    """Write a fitted head to `path` (a `.pt` file: JSON spec + state dict)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(head_to_payload(head), target)
    return target


def load_head(path: str | Path) -> Any:
    """Read a head written by `save_head` (safe: `weights_only=True`, no pickled code)."""
    source = Path(path)
    if not source.is_file():
        raise ValueError(f"no head file at {source}; train one with `photosieve train`")
    payload = torch.load(source, map_location="cpu", weights_only=True)
    return head_from_payload(payload)
