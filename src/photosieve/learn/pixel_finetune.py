"""Full fine-tuning of Lite0 on the photos themselves: every layer, pixel augmentation, any device.

`learn.finetune` tunes Lite0's last stages on cached trunk maps, which is what a 2-core CPU
allows. With an accelerator (issue 11's `device` path) the whole network trains on pixels: the
photos sit on the device as the served uint8 input (squashed to 224 px, `vision.preprocess`),
and each batch is augmented there (`augment`): a random resized crop and horizontal flip in one
`affine_grid`/`grid_sample`, a brightness/contrast/saturation jitter, and — for a share of the
batch — a round trip through a tiny avatar's size (32–128 px) and back, so the model sees the
blurred upsampling a small upload gets when it is served.

The recipe ("linear probe, then fine-tune", Kumar et al. 2022): the product head's classifier
(`learn.head.build_network`) is first fitted on the frozen clean embeddings (`warm_steps`), then
backbone and classifier train together with AdamW (a smaller learning rate for the backbone),
a linear warm-up and a cosine decay, BCE on class-balanced draws (the product head's recipe), bf16
autocast on CUDA, and an exponential moving average of the weights
(`torch.optim.swa_utils.AveragedModel`). After each epoch both the raw and the averaged weights
are scored on the validation slice; the best of all (review rate at 99% recall, ties: AP;
epoch 0 = the frozen backbone with the warm-started head) is kept, with early stopping — or,
with `keep="last_averaged"`, the moving average after a fixed number of epochs (no choice made
on the validation slice, which a 99%-recall figure on a few hundred positives makes noisy).

The model is `learn.finetune.TunedLite0` (backbone + classifier), so the tuned backbone exports
and serves exactly like the frozen one (`learn.finetune.export_tuned_onnx`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from photosieve.learn.finetune import BACKBONE, TRAIN, TunedLite0, validation_record
from photosieve.learn.head import Standardize
from photosieve.learn.loop import init_weights, monitor_key
from photosieve.vision.backbone import backbone_config


@dataclass(frozen=True)
class PixelTuneConfig:
    """Everything that decides a full fine-tuning run (stored with its results)."""

    epochs: int = 15
    samples_per_epoch: int = 0  # class-balanced draws per epoch; 0 = the training set's size
    batch_size: int = 128
    lr_backbone: float = 3e-4
    lr_head: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    patience: int = 5
    crop_scale: tuple[float, float] = (0.65, 1.0)  # share of the photo's area a crop keeps
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    jitter: float = 0.2  # brightness, contrast, saturation × U(1 − j, 1 + j)
    low_res_share: float = 0.25  # share of a batch sent through a tiny avatar's size
    low_res_sides: tuple[int, int] = (32, 128)
    ema_decay: float = 0.99  # per step
    # classifier-only steps on the frozen embeddings before tuning: `warm_passes` over the
    # training rows in batches of 256, at most `warm_steps`
    warm_steps: int = 300
    warm_passes: float = 20.0
    hidden: tuple[int, ...] = TRAIN.hidden
    dropout: float = TRAIN.dropout
    monitor: str = "review_rate"  # `learn.loop.monitor_key`
    # "best": the best validation figures of any epoch, raw or averaged (early stopping);
    # "last_averaged": the moving average after the last epoch (validation only recorded)
    keep: str = "best"
    seed: int = 0
    # the seed of the classifier's initial weights and its warm start (None: `seed`); runs
    # that share it and differ in `seed` (draws, augmentation, dropout) start from one model,
    # so their weights can be averaged (a model soup, `learn.soup`)
    init_seed: int | None = None
    amp: bool = True  # bf16 autocast where the device is CUDA
    # the registered backbone tuned: Lite0, what the product serves tuned; another (Lite1) is
    # a bench experiment, its photos at that backbone's input size
    backbone: str = BACKBONE

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass
class PixelTuneResult:
    """The best weights (loaded into `model`), the per-epoch history, and where the best was."""

    model: TunedLite0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_averaged: bool = False  # the best weights were the moving average's


def _mean_std(model: TunedLite0, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    cfg = model.backbone.config.preprocess
    mean = torch.tensor(cfg.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(cfg.std, device=device).view(1, 3, 1, 1)
    return mean, std


def augment(images: torch.Tensor, cfg: PixelTuneConfig, gen: torch.Generator) -> torch.Tensor:
    """(B, H, W, 3) uint8 served inputs → (B, 3, H, W) float in [0, 1], augmented per photo."""
    x = images.permute(0, 3, 1, 2).float().div_(255.0)
    b, _, h, w = x.shape
    dev = x.device

    def uniform(lo: float, hi: float, n: int = b) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=gen, device=dev)

    area = uniform(*cfg.crop_scale)
    ratio = torch.exp(uniform(math.log(cfg.crop_ratio[0]), math.log(cfg.crop_ratio[1])))
    sx = torch.sqrt(area * ratio).clamp(max=1.0)  # the crop's width as a share of the photo's
    sy = torch.sqrt(area / ratio).clamp(max=1.0)
    tx = (1.0 - sx) * uniform(-1.0, 1.0)
    ty = (1.0 - sy) * uniform(-1.0, 1.0)
    flip = torch.where(torch.rand(b, generator=gen, device=dev) < 0.5, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3, device=dev)
    theta[:, 0, 0], theta[:, 0, 2] = sx * flip, tx
    theta[:, 1, 1], theta[:, 1, 2] = sy, ty
    grid = F.affine_grid(theta, [b, 3, h, w], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    j = cfg.jitter
    gray = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)
    x = gray + (x - gray) * uniform(1 - j, 1 + j).view(b, 1, 1, 1)  # saturation
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = mean + (x - mean) * uniform(1 - j, 1 + j).view(b, 1, 1, 1)  # contrast
    x = x * uniform(1 - j, 1 + j).view(b, 1, 1, 1)  # brightness
    n_low = round(cfg.low_res_share * b)
    if n_low:
        lo, hi = cfg.low_res_sides
        side = int(torch.randint(lo, hi + 1, (1,), generator=gen, device=dev).item())
        small = F.interpolate(x[:n_low], size=(side, side), mode="bilinear", antialias=True)
        x[:n_low] = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    return x.clamp_(0.0, 1.0)


def _autocast(device: torch.device, cfg: PixelTuneConfig) -> Any:
    enabled = cfg.amp and device.type == "cuda"
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


def _forward(
    model: nn.Module, x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, cfg: PixelTuneConfig
) -> torch.Tensor:
    """Logits (B,) of `model` (a TunedLite0 or its moving average) on [0, 1] images: the
    backbone under autocast, the classifier in float32."""
    x = ((x - mean) / std).contiguous(memory_format=torch.channels_last)
    net = model.module if isinstance(model, AveragedModel) else model
    assert isinstance(net, TunedLite0)
    with _autocast(x.device, cfg):
        features = net.backbone.forward_features(x)
    return net.classifier(features.float())[:, 0]


def _clean_batches(
    images: torch.Tensor, rows: np.ndarray, batch_size: int
) -> Iterator[torch.Tensor]:
    """The rows' served inputs as (B, 3, H, W) floats in [0, 1], in order."""
    for start in range(0, len(rows), batch_size):
        idx = torch.as_tensor(rows[start : start + batch_size], device=images.device)
        yield images[idx].permute(0, 3, 1, 2).float().div_(255.0)


@torch.no_grad()
def embed_pixels(
    model: TunedLite0, images: torch.Tensor, rows: np.ndarray, *, batch_size: int = 256,
    amp: bool = True,
) -> torch.Tensor:  # fmt: skip
    """(len(rows), 2560) float32 embeddings of the clean served inputs (eval mode)."""
    model.eval()
    mean, std = _mean_std(model, images.device)
    cfg = PixelTuneConfig(amp=amp)
    out = []
    for x in _clean_batches(images, rows, batch_size):
        x = ((x - mean) / std).contiguous(memory_format=torch.channels_last)
        with _autocast(images.device, cfg):
            out.append(model.backbone.forward_features(x).float())
    return torch.cat(out) if out else torch.zeros((0, model.backbone.config.embed_dim))


@torch.no_grad()
def score_pixels(
    model: nn.Module, images: torch.Tensor, rows: np.ndarray, *, batch_size: int = 256,
    amp: bool = True,
) -> np.ndarray:  # fmt: skip
    """P(offensive) (len(rows),) of the clean served inputs, by a TunedLite0 or its average."""
    model.eval()
    tuned = model.module if isinstance(model, AveragedModel) else model
    assert isinstance(tuned, TunedLite0)
    mean, std = _mean_std(tuned, images.device)
    cfg = PixelTuneConfig(amp=amp)
    out = [torch.sigmoid(_forward(model, x, mean, std, cfg))
           for x in _clean_batches(images, rows, batch_size)]  # fmt: skip
    return torch.cat(out).cpu().numpy().astype(np.float64) if out else np.zeros(0)


def _balanced(y: np.ndarray, n: int, gen: torch.Generator) -> np.ndarray:
    """`n` indices into `y`, drawn with replacement so both classes are equally likely."""
    counts = np.bincount(y, minlength=2).astype(np.float64)
    weights = torch.from_numpy(1.0 / counts[y])
    return torch.multinomial(weights, n, replacement=True, generator=gen).numpy()


def _warm_start(
    model: TunedLite0, images: torch.Tensor, y: np.ndarray, train: np.ndarray,
    cfg: PixelTuneConfig, gen: torch.Generator,
) -> None:  # fmt: skip
    """Standardize ← the frozen embeddings' statistics; the classifier ← a few Adam steps."""
    emb = embed_pixels(model, images, train, amp=cfg.amp)
    layer = model.classifier[0]
    assert isinstance(layer, Standardize)
    layer.set_from(emb)
    init_weights(model.classifier, "relu")
    model.classifier.train()
    opt = torch.optim.Adam(model.classifier.parameters(), lr=cfg.lr_head)
    target = torch.as_tensor(y[train], dtype=torch.float32, device=images.device)
    steps = min(cfg.warm_steps, max(20, math.ceil(cfg.warm_passes * len(train) / 256)))
    for _ in range(steps):
        pick = torch.as_tensor(_balanced(y[train], 256, gen), device=images.device)
        loss = F.binary_cross_entropy_with_logits(model.classifier(emb[pick])[:, 0], target[pick])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def _schedule(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    net = model.module if isinstance(model, AveragedModel) else model
    return {k: v.detach().to("cpu", copy=True) for k, v in net.state_dict().items()}


def fine_tune_pixels(
    images: torch.Tensor,
    y: np.ndarray,
    train: np.ndarray,
    val: np.ndarray,
    cfg: PixelTuneConfig | None = None,
    *,
    on_epoch: Callable[[int, dict[str, Any]], None] | None = None,
) -> PixelTuneResult:
    """Tune every layer on rows `train` of `images` (N, S, S, 3) uint8 on their device (S: the
    backbone's input size, 224 for Lite0);
    early-stop on rows `val` (clean). `y` (N,) 0/1 labels of every row."""
    cfg = cfg or PixelTuneConfig()
    device = images.device
    y = np.asarray(y, dtype=np.int64)
    train, val = np.asarray(train), np.asarray(val)
    if images.ndim != 4 or images.shape[3] != 3 or images.dtype != torch.uint8:
        raise ValueError(f"expected uint8 served inputs (N, H, W, 3), got {tuple(images.shape)}")
    side = backbone_config(cfg.backbone).preprocess.input_size
    if images.shape[1:3] != (side, side):
        raise ValueError(
            f"{cfg.backbone} is served at {side} px: tune it on (N, {side}, {side}, 3) inputs, "
            f"got {tuple(images.shape)}"
        )
    if cfg.keep not in ("best", "last_averaged"):
        raise ValueError(f"unknown keep {cfg.keep!r}; known: 'best', 'last_averaged'")
    if y[train].min() == y[train].max() or y[val].sum() == 0:
        raise ValueError("training needs both classes and validation needs positives")
    init_seed = cfg.seed if cfg.init_seed is None else cfg.init_seed
    torch.manual_seed(init_seed)
    gen = torch.Generator().manual_seed(init_seed)  # draws (CPU)
    aug_gen = torch.Generator(device=device).manual_seed(cfg.seed + 1)  # augmentation
    model = TunedLite0(cfg.hidden, cfg.dropout, cfg.backbone).to(device)
    model.backbone.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    _warm_start(model, images, y, train, cfg, gen)
    if init_seed != cfg.seed:  # the shared start, then this run's own draws and dropout
        torch.manual_seed(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)
    for name, p in model.backbone.named_parameters():
        p.requires_grad_(not name.startswith("_fc."))  # the ImageNet classifier is not used
    mean, std = _mean_std(model, device)
    backbone_params = [p for p in model.backbone.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(
        [
            {"params": backbone_params, "lr": cfg.lr_backbone},
            {"params": list(model.classifier.parameters()), "lr": cfg.lr_head},
        ],
        weight_decay=cfg.weight_decay,
    )
    per_epoch = cfg.samples_per_epoch or len(train)
    steps = math.ceil(per_epoch / cfg.batch_size)
    total, warmup = cfg.epochs * steps, max(1, int(cfg.warmup_epochs * steps))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _schedule(s, warmup, total))
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
    result = PixelTuneResult(model=model)
    record: dict[str, Any] = {"epoch": 0} | validation_record(
        score_pixels(model, images, val, amp=cfg.amp), y[val]
    )
    best_key, best_state = monitor_key(record, cfg.monitor), _cpu_state(model)
    result.history.append(record)
    if on_epoch is not None:
        on_epoch(0, record)
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        rows = train[_balanced(y[train], per_epoch, gen)]
        loss_sum, started = 0.0, time.perf_counter()
        for start in range(0, per_epoch, cfg.batch_size):
            b_rows = rows[start : start + cfg.batch_size]
            idx = torch.as_tensor(b_rows, device=device)
            target = torch.as_tensor(y[b_rows], dtype=torch.float32, device=device)
            x = augment(images[idx], cfg, aug_gen)
            loss = F.binary_cross_entropy_with_logits(_forward(model, x, mean, std, cfg), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            ema.update_parameters(model)
            loss_sum += float(loss.detach()) * len(b_rows)
        seconds = time.perf_counter() - started
        record = {
            "epoch": epoch,
            "loss": loss_sum / per_epoch,
            "train_seconds": seconds,
            "samples_per_s": per_epoch / seconds,
        }
        for averaged, net in ((False, model), (True, ema)):
            figures = validation_record(score_pixels(net, images, val, amp=cfg.amp), y[val])
            record |= {(f"ema_{k}" if averaged else k): v for k, v in figures.items()}
            key = monitor_key(figures, cfg.monitor)
            if key < best_key:
                best_key, best_state = key, _cpu_state(net)
                result.best_epoch, result.best_averaged = epoch, averaged
        result.history.append(record)
        if on_epoch is not None:
            on_epoch(epoch, record)
        if cfg.keep == "best" and epoch - result.best_epoch >= cfg.patience:
            break
    if cfg.keep == "last_averaged":
        best_state = _cpu_state(ema)
        result.best_epoch, result.best_averaged = len(result.history) - 1, True
    model.load_state_dict(best_state)
    model.eval()
    return result


def half_state(model: TunedLite0) -> dict[str, torch.Tensor]:
    """The tuned weights to carry (backbone without the unused ImageNet classifier, classifier):
    convolution and linear weights in float16, the 1-d rest (BatchNorm statistics, biases) in
    float32 — ≈ 9.5 MB instead of 19, embeddings within ~2% of the float32 model's."""
    return {
        k: (v.half() if v.is_floating_point() and v.ndim > 1 else v).cpu()
        for k, v in model.state_dict().items()
        if not k.startswith(("backbone._fc.", "tail.fc.", "trunk.", "tail."))
    }


def load_half_state(model: TunedLite0, state: dict[str, torch.Tensor]) -> TunedLite0:
    """Load `half_state`'s weights into a TunedLite0 (its ImageNet classifier stays as built)."""
    full = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    missing, unexpected = model.load_state_dict(full, strict=False)
    bad = [k for k in missing if not k.startswith(("backbone._fc.", "tail.", "trunk."))]
    if bad or unexpected:
        raise ValueError(
            f"tuned weights do not fit: missing {bad[:3]}, unexpected {unexpected[:3]}"
        )
    return model.eval()


__all__ = [
    "PixelTuneConfig",
    "PixelTuneResult",
    "augment",
    "embed_pixels",
    "fine_tune_pixels",
    "half_state",
    "load_half_state",
    "score_pixels",
]
