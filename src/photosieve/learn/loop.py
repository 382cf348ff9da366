"""The training loop shared by every head: imbalance handling, early stopping, grad norms.

One function, `train_network`, readable top to bottom: seed → standardise → AdamW with a cosine
schedule → per epoch: mini-batches (shuffled, or class-balanced resampling), loss (BCE or focal,
positives optionally up-weighted, optionally plus a top-push term that lifts the batch's
lowest-scored positives above its highest-scored negatives), gradient norms per layer,
validation metric → keep the best epoch's weights. Early stopping watches a high-recall metric
on validation (`monitor`: the review rate at 99% recall, its smooth partial-AUC version over
90–100% recall, or AP), ties broken by average precision.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from photosieve.config import CERTIFY
from photosieve.learn.grads import GradientRecorder, gradient_health, linear_layers
from photosieve.learn.metrics import (
    average_precision,
    high_recall_review_rate,
    review_rate_at_recall,
)

MONITOR_RECALL = CERTIFY.target_recall


class LoopConfig(Protocol):
    """The head parameters the loop reads."""

    activation: str
    epochs: int
    lr: float
    weight_decay: float
    batch_size: int
    imbalance: str
    loss: str
    focal_gamma: float
    top_push: float
    top_push_k: int
    top_push_margin: float
    patience: int
    seed: int
    monitor: str


@dataclass
class TrainResult:
    """What a run learnt besides the weights: per-epoch history, best epoch, gradient health."""

    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    gradient_health: dict[str, Any] = field(default_factory=dict)


def init_weights(network: nn.Module, activation: str) -> None:
    """He init for ReLU-like layers, Glorot for saturating ones; zero biases.

    PyTorch's default (uniform, gain 1/√3) shrinks the signal layer by layer even with ReLU,
    which would hide the difference between activations that `bench/activations.py` shows.
    """
    layers = linear_layers(network)
    for i, layer in enumerate(layers):
        if i < len(layers) - 1 and activation in ("relu", "gelu"):
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
        elif i < len(layers) - 1 and activation == "tanh":
            nn.init.xavier_normal_(layer.weight, gain=nn.init.calculate_gain("tanh"))
        elif len(layers) == 1:
            nn.init.zeros_(layer.weight)  # logistic regression: convex, start at the origin
        else:
            nn.init.xavier_normal_(layer.weight)
        nn.init.zeros_(layer.bias)


def _loss(
    logits: torch.Tensor, y: torch.Tensor, cfg: LoopConfig, pos_weight: float
) -> torch.Tensor:
    """Mean loss of a batch: logits (B,), y (B,) in {0., 1.}."""
    weights = 1.0 + (pos_weight - 1.0) * y  # (B,) positives weighted by pos_weight
    ce = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
    if cfg.loss == "focal":
        p = torch.sigmoid(logits)
        p_true = p * y + (1 - p) * (1 - y)
        ce = ce * (1 - p_true).pow(cfg.focal_gamma)
    loss = (weights * ce).sum() / weights.sum()
    if cfg.top_push > 0:
        loss = loss + cfg.top_push * top_push_term(logits, y, cfg.top_push_k, cfg.top_push_margin)
    return loss


def top_push_term(logits: torch.Tensor, y: torch.Tensor, k: int, margin: float) -> torch.Tensor:
    """Mean softplus(margin − (low − high)) over the pairs of the batch's k lowest-scored
    positives and k highest-scored negatives (logits): a partial-AUC surrogate for the corner
    that sets a 99%-recall threshold. 0 when the batch lacks a class."""
    pos, neg = logits[y > 0.5], logits[y < 0.5]
    if pos.numel() == 0 or neg.numel() == 0:
        return logits.sum() * 0.0
    low = torch.topk(pos, min(k, pos.numel()), largest=False).values  # (kp,)
    high = torch.topk(neg, min(k, neg.numel())).values  # (kn,)
    return F.softplus(margin - (low[:, None] - high[None, :])).mean()  # (kp, kn) → ()


def _epoch_indices(y: np.ndarray, cfg: LoopConfig, gen: torch.Generator) -> torch.Tensor:
    """Row order for one epoch: a shuffle, or (balanced) a class-balanced draw with replacement."""
    n = y.shape[0]
    if cfg.imbalance == "balanced":
        counts = np.bincount(y, minlength=2).astype(np.float64)
        w = torch.from_numpy(1.0 / counts[y])
        return torch.multinomial(w, n, replacement=True, generator=gen)
    return torch.randperm(n, generator=gen)


def _val_metrics(network: nn.Module, X: torch.Tensor, y: np.ndarray) -> dict[str, float]:
    network.eval()
    with torch.no_grad():
        scores = torch.sigmoid(network(X)[:, 0]).double().numpy()
    network.train()
    return {
        "val_review_rate": review_rate_at_recall(scores, y, recall=MONITOR_RECALL),
        "val_high_recall": high_recall_review_rate(scores, y, recall_from=0.9),
        "val_ap": average_precision(scores, y),
    }


def monitor_key(record: dict[str, Any], monitor: str) -> tuple[float, float]:
    """Sort key of an epoch (lower is better): the monitored metric, then −AP."""
    if monitor == "ap":
        return (-record["val_ap"], record["val_review_rate"])
    name = "val_review_rate" if monitor == "review_rate" else "val_high_recall"
    return (record[name], -record["val_ap"])


def train_network(
    network: nn.Sequential,
    X: np.ndarray,
    y: np.ndarray,
    *,
    val: tuple[np.ndarray, np.ndarray] | None,
    cfg: LoopConfig,
    on_epoch: Callable[[int, dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Fit `network` (Standardize first, one logit last) in place; returns the run's record."""
    result = TrainResult()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)  # fixes initialisation and dropout masks
        gen = torch.Generator().manual_seed(cfg.seed)  # fixes batch order
        init_weights(network, cfg.activation)
        Xt = torch.from_numpy(X)  # (N, D)
        yt = torch.from_numpy(y.astype(np.float32))  # (N,)
        std = Xt.std(dim=0)
        standardize = network[0]  # its buffers hold the training set's statistics
        assert isinstance(standardize.mean, torch.Tensor)
        assert isinstance(standardize.std, torch.Tensor)
        standardize.mean.copy_(Xt.mean(dim=0))
        standardize.std.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))

        n_pos = int(y.sum())
        pos_weight = (len(y) - n_pos) / n_pos if cfg.imbalance == "weighted" else 1.0
        steps = math.ceil(len(y) / cfg.batch_size)
        opt = torch.optim.AdamW(network.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs * steps)
        recorder = GradientRecorder(linear_layers(network))
        Xv = torch.from_numpy(val[0]) if val is not None else None

        best_key: tuple[float, float] | None = None
        best_state: dict[str, torch.Tensor] | None = None
        network.train()
        for epoch in range(1, cfg.epochs + 1):
            order = _epoch_indices(y, cfg, gen)
            total = 0.0
            for start in range(0, len(order), cfg.batch_size):
                idx = order[start : start + cfg.batch_size]
                loss = _loss(network(Xt[idx])[:, 0], yt[idx], cfg, pos_weight)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                recorder.after_backward()
                opt.step()
                sched.step()
                total += loss.item() * len(idx)
            record: dict[str, Any] = {
                "epoch": epoch,
                "loss": total / len(order),
                "grad_norms": recorder.end_epoch(),
            }
            if Xv is not None and val is not None:
                record |= _val_metrics(network, Xv, val[1])
                key = monitor_key(record, cfg.monitor)
                if best_key is None or key < best_key:
                    best_key, result.best_epoch = key, epoch
                    best_state = {k: v.detach().clone() for k, v in network.state_dict().items()}
            else:
                result.best_epoch = epoch
            result.history.append(record)
            if on_epoch is not None:
                on_epoch(epoch, record)
            if Xv is not None and epoch - result.best_epoch >= cfg.patience:
                break
        if best_state is not None:
            network.load_state_dict(best_state)
    network.eval()
    result.gradient_health = gradient_health([r["grad_norms"] for r in result.history])
    return result
