"""Fine-tuning EfficientNet-Lite0's last stages on the CPU: frozen trunk, trainable tail, export.

Lite0 is split at stride 16 (`trunk_blocks`, read off the stage table): the *trunk* (stem …
stage 5) stays frozen and its (112, 14, 14) map at 224 px is computed once per photo and view and
cached (`learn.trunk_cache`);
the *tail* (stage 6, stage 7, head conv + BN, avg+max pooling → 2,560-d, exactly the served
`efficientnet_lite0_avgmax` embedding) is trained together with a ReLU MLP classifier
(`learn.head.build_network`: Standardize → Linear → ReLU → Dropout → Linear) by BCE on
class-balanced draws (the product head's recipe), AdamW with a small learning rate for the tail and
a larger one for the classifier, a cosine schedule, and early stopping on the validation slice's
review rate at 99% recall (ties: AP). The tail's BatchNorm either keeps its ImageNet statistics
(`train_bn=False`: eval mode, affine weights still learn) or re-estimates them (`True`).

The tuned backbone (trunk + tuned tail) is an ordinary `EfficientNetLite`: `export_tuned_onnx`
writes it with `vision.onnx.export_features`, so it is served exactly like the frozen one (uint8
NHWC input, avg+max embedding output). Runs are deterministic given `seed` (one torch thread per
op order; the per-epoch draws come from a seeded generator).
"""

from __future__ import annotations

import copy
import io
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
import torch.nn.functional as F
from torch import nn

from photosieve.config import TUNED_BASE_BACKBONE, TrainConfig
from photosieve.learn.head import MLPHead, Standardize, build_network
from photosieve.learn.loop import init_weights, monitor_key
from photosieve.learn.metrics import (
    average_precision,
    high_recall_review_rate,
    review_rate_at_recall,
)
from photosieve.learn.train import make_head
from photosieve.vision.backbone import STAGES, EfficientNetLite, create_backbone
from photosieve.vision.onnx import OPSET, available_cores, export_features
from photosieve.vision.pooling import pool

BACKBONE = TUNED_BASE_BACKBONE  # the served backbone whose tail is tuned
TRUNK_STAGES = 5  # stages 1–5 end at stride 16: the trunk; stages 6–7 and the head: the tail
TRUNK_STRIDE = 16


def trunk_blocks(variant: str) -> int:
    """How many of the network's blocks make the trunk: those of its first `TRUNK_STAGES` stages
    (Lite0: 1 + 2 + 2 + 3 + 3 = 11; Lite1, deeper: 15), read off the stage table."""
    return sum(repeats for repeats, *_ in STAGES[variant][:TRUNK_STAGES])


def trunk_channels(variant: str) -> int:
    """Channels of the trunk's output map: stage 5's (112 for Lite0 and Lite1)."""
    return int(STAGES[variant][TRUNK_STAGES - 1][-1])


TRUNK_CHANNELS = trunk_channels("lite0")  # the maps `learn.trunk_cache` caches: Lite0's
TRAIN = TrainConfig()  # the product head's training settings (the warm start's)


@dataclass(frozen=True)
class FineTuneConfig:
    """Everything that decides a fine-tuning run (stored with its results)."""

    epochs: int = 3
    samples_per_epoch: int = 0  # class-balanced draws per epoch; 0 = the training set's size
    batch_size: int = 64
    lr_tail: float = 1e-4
    lr_head: float = 1e-4  # the product head's (TrainConfig.lr); it starts warm
    weight_decay: float = 1e-2
    hidden: tuple[int, ...] = TRAIN.hidden  # the classifier: the product head's shape
    dropout: float = TRAIN.dropout
    train_bn: bool = False  # False: the tail's BN keeps ImageNet statistics (eval mode)
    patience: int = 3
    monitor: str = "review_rate"  # `learn.loop.monitor_key`: review rate at 99% recall, then AP
    seed: int = 0
    stats_rows: int = 1024  # training rows whose clean embeddings set the Standardize layer
    # Warm start ("linear probe, then fine-tune", Kumar et al. 2022): first fit the product's MLP
    # head on the frozen clean embeddings of the training rows, then tune tail + head together.
    # A random head would drag the tail while it learns; epoch 0 (the warm start) is a
    # candidate for early stopping, so tuning is kept only where validation says it helps.
    warm_start: bool = True
    warm_epochs: int = 30  # the warm start's head config: `config.TrainConfig`'s, one seed

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["hidden"] = list(self.hidden)
        return data


class Trunk(nn.Module):
    """Stem … stage 5 of an EfficientNet-Lite (shares its modules): (N, 3, H, W) → (N, C, H/16,
    W/16), C = `trunk_channels` (112 for Lite0)."""

    def __init__(self, net: EfficientNetLite) -> None:
        super().__init__()
        self.stem, self.bn0, self.act = net._conv_stem, net._bn0, net.act
        self.blocks = nn.Sequential(*net._blocks[: trunk_blocks(net.variant)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.act(self.bn0(self.stem(x))))


class Tail(nn.Module):
    """Stages 6–7, head conv + BN, avg+max pooling (shares the modules of its network)."""

    def __init__(self, net: EfficientNetLite) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*net._blocks[trunk_blocks(net.variant) :])
        self.conv_head, self.bn1, self.act, self.fc = net._conv_head, net._bn1, net.act, net._fc
        self.pooling = net.pooling

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:  # (N, 112, 14, 14) → (N, 2560)
        x = self.act(self.bn1(self.conv_head(self.blocks(fmap))))  # (N, 1280, 7, 7)
        return pool(x, self.pooling, self.fc)


class TunedLite0(nn.Module):
    """An avg+max backbone split into trunk and tail, plus a classifier on the embedding: Lite0
    (`BACKBONE`, what the product tunes) unless `backbone` names another registered one (the
    split is read off its stage table: a Lite1 tune is a bench experiment so far)."""

    def __init__(
        self,
        hidden: tuple[int, ...] = TRAIN.hidden,
        dropout: float = TRAIN.dropout,
        backbone: str = BACKBONE,
    ) -> None:
        super().__init__()
        self.backbone = create_backbone(backbone)
        self.trunk = Trunk(self.backbone)
        self.tail = Tail(self.backbone)
        self.classifier = build_network(self.backbone.config.embed_dim, hidden, "relu", dropout)
        for p in self.trunk.parameters():
            p.requires_grad_(False)
        self.tail.fc.requires_grad_(False)  # the ImageNet classifier is not part of avg+max

    def forward_maps(self, fmap: torch.Tensor) -> torch.Tensor:
        """Cached trunk maps (N, 112, 14, 14) → logits (N,)."""
        return self.classifier(self.tail(fmap))[:, 0]

    def set_mode(self, training: bool, *, train_bn: bool) -> None:
        """Train/eval mode; with `train_bn=False` the tail's BatchNorms stay in eval mode."""
        self.train(training)
        self.trunk.eval()
        if training and not train_bn:
            for m in self.tail.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()


@dataclass
class FineTuneResult:
    """The tuned model (best epoch's weights), its per-epoch history and the best epoch."""

    model: TunedLite0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    # the best *tuned* epoch (≥ 1) and its weights, even where the warm start (0) won
    best_tuned_epoch: int = 0
    tuned_state: dict[str, torch.Tensor] = field(default_factory=dict)


Maps = np.ndarray  # (N, V, 112, 14, 14) float16 (a memmap from `learn.trunk_cache`)


def _batches(rows: np.ndarray, size: int) -> list[np.ndarray]:
    return [rows[i : i + size] for i in range(0, len(rows), size)]


def _read(maps: Maps, rows: np.ndarray, views: np.ndarray) -> torch.Tensor:
    """Rows' chosen views as float32 (B, 112, 14, 14); memmap reads in sorted row order."""
    order = np.argsort(rows, kind="stable")
    out = np.empty((len(rows), *maps.shape[2:]), dtype=np.float32)
    out[order] = maps[rows[order], views[order]]
    return torch.from_numpy(out)


class _Scores(nn.Module):
    """Tail + classifier → P(offensive) (N,), the graph `score_maps` runs."""

    def __init__(self, model: TunedLite0) -> None:
        super().__init__()
        self.model = model

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.model.forward_maps(fmap))


def _session(module: nn.Module, side: int) -> ort.InferenceSession:
    """`module` on (N, 112, side, side) maps as an in-memory ONNX graph (≈ 9× PyTorch's speed)."""
    buffer = io.BytesIO()
    example = torch.zeros((2, TRUNK_CHANNELS, side, side))
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            copy.deepcopy(module).eval(),
            (example,),
            buffer,  # type: ignore[arg-type]  # torch writes to a file object too
            input_names=["map"],
            output_names=["out"],
            dynamic_axes={"map": {0: "batch"}, "out": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = available_cores()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])


def _run(module: nn.Module, maps: Maps, rows: np.ndarray, view: int, batch_size: int) -> np.ndarray:
    session = _session(module, maps.shape[3])
    parts = []
    for chunk in _batches(np.asarray(rows), batch_size):
        x = _read(maps, chunk, np.full(len(chunk), view)).numpy()
        parts.append(np.asarray(session.run(None, {"map": x})[0]))
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def embed_maps(
    model: TunedLite0, maps: Maps, rows: np.ndarray, *, view: int = 0, batch_size: int = 128
) -> np.ndarray:
    """(len(rows), 2560) float32 embeddings of the rows' cached view through the (tuned) tail."""
    return _run(model.tail, maps, rows, view, batch_size).astype(np.float32)


def score_maps(
    model: TunedLite0, maps: Maps, rows: np.ndarray, *, view: int = 0, batch_size: int = 128
) -> np.ndarray:
    """P(offensive) (len(rows),) from the rows' cached view (0 = the clean, served one)."""
    return _run(_Scores(model), maps, rows, view, batch_size).astype(np.float64)


def validation_record(scores: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """An epoch's validation figures (`learn.loop.monitor_key` reads them)."""
    return {
        "val_review_rate": review_rate_at_recall(scores, y, recall=0.99),
        "val_high_recall": high_recall_review_rate(scores, y, recall_from=0.9),
        "val_ap": average_precision(scores, y),
    }


def _set_standardize(model: TunedLite0, maps: Maps, rows: np.ndarray) -> None:
    """Standardize ← mean/std of the untuned clean embeddings of (some of) the training rows."""
    layer = model.classifier[0]
    assert isinstance(layer, Standardize)
    layer.set_from(torch.from_numpy(embed_maps(model, maps, rows)))


def _warm_start(
    model: TunedLite0,
    maps: Maps,
    y: np.ndarray,
    train: np.ndarray,
    val: np.ndarray,
    cfg: FineTuneConfig,
) -> None:
    """Fit the product's MLP head (one seed) on the frozen clean embeddings; copy it in."""
    one = replace(TRAIN, hidden=cfg.hidden, dropout=cfg.dropout, activation="relu",
                  epochs=cfg.warm_epochs, seed=cfg.seed, ensemble=1)  # fmt: skip
    head = make_head(one)
    assert isinstance(head, MLPHead)  # ensemble=1: one head
    head.fit(
        embed_maps(model, maps, train),
        y[train],
        X_val=embed_maps(model, maps, val),
        y_val=y[val],
    )
    model.classifier.load_state_dict(head.network_.state_dict())


def fine_tune(
    maps: Maps,
    y: np.ndarray,
    train: np.ndarray,
    val: np.ndarray,
    cfg: FineTuneConfig | None = None,
    *,
    on_epoch: Callable[[int, dict[str, Any]], None] | None = None,
) -> FineTuneResult:
    """Train tail + classifier on rows `train` of `maps` (all views), early-stop on `val` (view 0).

    `y` (N,) 0/1 labels of every row of `maps`; `train`, `val` are row indices.
    """
    cfg = cfg or FineTuneConfig()
    y = np.asarray(y, dtype=np.int64)
    train, val = np.asarray(train), np.asarray(val)
    if maps.ndim != 5 or maps.shape[2] != TRUNK_CHANNELS:
        raise ValueError(f"expected trunk maps (N, V, {TRUNK_CHANNELS}, h, w), got {maps.shape}")
    if y[train].min() == y[train].max() or y[val].sum() == 0:
        raise ValueError("training needs both classes and validation needs positives")
    views = maps.shape[1]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)
        model = TunedLite0(cfg.hidden, cfg.dropout)
        # channels-last convolutions train ≈ 1.4× faster on the CPU
        model.tail.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        if cfg.warm_start:
            _warm_start(model, maps, y, train, val, cfg)
        else:
            init_weights(model.classifier, "relu")
            stats = train[torch.randperm(len(train), generator=gen)[: cfg.stats_rows].numpy()]
            _set_standardize(model, maps, np.sort(stats))
        tail_params = [p for p in model.tail.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(
            [
                {"params": tail_params, "lr": cfg.lr_tail},
                {"params": list(model.classifier.parameters()), "lr": cfg.lr_head},
            ],
            weight_decay=cfg.weight_decay,
        )
        per_epoch = cfg.samples_per_epoch or len(train)
        steps = math.ceil(per_epoch / cfg.batch_size)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs * steps)
        counts = np.bincount(y[train], minlength=2).astype(np.float64)
        weights = torch.from_numpy(1.0 / counts[y[train]])  # class-balanced draws
        result = FineTuneResult(model=model)
        best_key: tuple[float, float] | None = None
        best_state: dict[str, torch.Tensor] | None = None
        tuned_key: tuple[float, float] | None = None
        if cfg.warm_start:  # epoch 0: the frozen backbone with the warm-started head
            record: dict[str, Any] = {"epoch": 0} | validation_record(
                score_maps(model, maps, val), y[val]
            )
            best_key, best_state = (
                monitor_key(record, cfg.monitor),
                copy.deepcopy(model.state_dict()),
            )
            result.history.append(record)
            if on_epoch is not None:
                on_epoch(0, record)
        for epoch in range(1, cfg.epochs + 1):
            model.set_mode(True, train_bn=cfg.train_bn)
            pick = torch.multinomial(weights, per_epoch, replacement=True, generator=gen)
            view = torch.randint(0, views, (per_epoch,), generator=gen).numpy()
            rows = train[pick.numpy()]
            total, started = 0.0, time.perf_counter()
            for start in range(0, per_epoch, cfg.batch_size):
                b_rows = rows[start : start + cfg.batch_size]
                x = _read(maps, b_rows, view[start : start + cfg.batch_size])
                x = x.contiguous(memory_format=torch.channels_last)
                target = torch.from_numpy(y[b_rows].astype(np.float32))
                loss = F.binary_cross_entropy_with_logits(model.forward_maps(x), target)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += loss.item() * len(b_rows)
            seconds = time.perf_counter() - started
            record = {
                "epoch": epoch,
                "loss": total / per_epoch,
                "train_seconds": seconds,
                "samples_per_s": per_epoch / seconds,
            }
            started = time.perf_counter()
            record |= validation_record(score_maps(model, maps, val), y[val])
            record["val_seconds"] = time.perf_counter() - started
            key = monitor_key(record, cfg.monitor)
            if best_key is None or key < best_key:
                best_key, result.best_epoch = key, epoch
                best_state = copy.deepcopy(model.state_dict())
            if tuned_key is None or key < tuned_key:
                tuned_key, result.best_tuned_epoch = key, epoch
                result.tuned_state = copy.deepcopy(model.state_dict())
            result.history.append(record)
            if on_epoch is not None:
                on_epoch(epoch, record)
            if epoch - result.best_epoch >= cfg.patience:
                break
        assert best_state is not None
        model.load_state_dict(best_state)
    model.eval()
    return result


def export_tuned_onnx(model: TunedLite0, target: Path) -> Path:
    """The tuned backbone (trunk + tuned tail, avg+max output) as ONNX, served like the frozen."""
    return export_features(copy.deepcopy(model.backbone).eval(), Path(target))


def save_backbone_weights(model: TunedLite0, target: Path) -> Path:
    """The tuned backbone's state dict (same keys as the Lite0 checkpoint, `strict=True` loads)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.backbone.state_dict(), target)
    return target
