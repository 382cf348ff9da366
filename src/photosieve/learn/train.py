"""Training the head: `TrainConfig`, the split manifest's arrays, `fit_head` and per-split metrics.

`fit_head(X, frame, cfg)` fits the head `cfg` describes on the `train` rows (external sources
included) with early stopping on `validation`; `split_metrics` gives ranking and error metrics
per split. Packaging the result as a `ModelBundle` is the train stage in `photosieve.pipeline`.
Nothing here prints: progress goes through a callback so the CLI can draw a Rich bar.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from photosieve.config import CERTIFY, TrainConfig
from photosieve.data.manifest import read_manifest
from photosieve.learn.ensemble import EnsembleHead
from photosieve.learn.grads import VanishingGradientWarning
from photosieve.learn.head import MLPHead
from photosieve.learn.metrics import (
    as_binary_labels,
    error_rate,
    ranking_summary,
    threshold_at_recall,
)
from photosieve.records import Split
from photosieve.vision import DEFAULT_BACKBONE
from photosieve.vision.embed import embed_files

EpochCallback = Callable[[int, dict[str, Any]], None]


def make_head(cfg: TrainConfig, jobs: int = 1) -> MLPHead | EnsembleHead:
    """The (unfitted) head `cfg` describes; an ensemble fits its members in `jobs` processes."""
    head = MLPHead(
        cfg.hidden,
        cfg.activation,
        cfg.dropout,
        epochs=cfg.epochs,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        batch_size=cfg.batch_size,
        imbalance=cfg.imbalance,
        loss=cfg.loss,
        patience=cfg.patience,
        seed=cfg.seed,
        monitor=cfg.monitor,
    )
    return EnsembleHead(head, cfg.ensemble, n_jobs=jobs) if cfg.ensemble > 1 else head


def read_split_manifest(path: str | Path) -> pd.DataFrame:
    """The split manifest as a DataFrame (validated by the data stage's reader)."""
    frame = read_manifest(path)
    if not (frame["split"] == Split.TRAIN.value).any():
        raise ValueError(f"{path}: no rows with split 'train'; run `photosieve split` first")
    if not (frame["split"] == Split.VALIDATION.value).any():
        raise ValueError(f"{path}: no rows with split 'validation' (needed for early stopping)")
    return frame


def embed_manifest(
    frame: pd.DataFrame, *, workdir: Path | None, backbone: str, progress: bool
) -> np.ndarray:
    """(N, D) embeddings aligned with the manifest's rows (vision stage's cache)."""
    paths = [Path(p) for p in frame["path"]]
    return embed_files(paths, workdir=workdir, backbone=backbone, progress=progress)


def mirrored_train_rows(
    frame: pd.DataFrame, *, workdir: Path | None, backbone: str, progress: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The `train` rows' photos mirrored left to right: embeddings (T, D) and labels (T,), the
    head's extra training rows when `TrainConfig.train_mirror` asks (validation and everything
    downstream see the photos as served)."""
    train = (frame["split"].astype(str) == Split.TRAIN.value).to_numpy()
    paths = [Path(p) for p in frame.loc[train, "path"]]
    X = embed_files(paths, workdir=workdir, backbone=backbone, progress=progress, mirror=True)
    return X, as_binary_labels(frame.loc[train, "label"].to_numpy())


@dataclass
class TunedBackbone:
    """What fine-tuning gives: the tuned backbone's weights file and the classifier tuned with it
    (as a fitted `MLPHead` on the tuned embeddings; its `history_` is the per-epoch record)."""

    weights: Path
    head: MLPHead


def tune_backbone(
    frame: pd.DataFrame, cfg: TrainConfig, *, workdir: Path | None, progress: bool
) -> TunedBackbone:
    """Fine-tune every layer of `cfg.backbone`, with a `cfg.hidden`/`cfg.dropout` classifier, on
    the manifest's `train` photos for `cfg.finetune_epochs` (`learn.pixel_finetune`: fixed
    schedule, moving average kept; the validation photos are only scored, per epoch, for the
    log); with `cfg.finetune_seeds` > 1, that many runs from one start averaged into one network
    (`learn.soup`). The tuned weights go to a file under `<workdir>/backbones/`
    (`vision.tuned.save_tuned`). A CUDA GPU is used when present."""
    from concurrent.futures import ThreadPoolExecutor

    import torch

    from photosieve.config import Workdir
    from photosieve.learn.finetune import validation_record
    from photosieve.learn.pixel_finetune import PixelTuneConfig, fine_tune_pixels, score_pixels
    from photosieve.learn.soup import make_soup
    from photosieve.vision.backbone import backbone_config
    from photosieve.vision.preprocess import load_for_model
    from photosieve.vision.tuned import save_tuned

    split = frame["split"].to_numpy()
    rows = np.flatnonzero(np.isin(split, [Split.TRAIN.value, Split.VALIDATION.value]))
    preprocess = backbone_config(cfg.backbone).preprocess
    paths = [Path(p) for p in frame["path"].to_numpy()[rows]]
    with ThreadPoolExecutor() as pool:
        pixels = np.stack(list(pool.map(lambda p: load_for_model(p, preprocess), paths)))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    y = as_binary_labels(frame["label"].to_numpy()[rows])
    train = np.flatnonzero(split[rows] == Split.TRAIN.value)
    val = np.flatnonzero(split[rows] == Split.VALIDATION.value)
    images = torch.from_numpy(pixels).to(device)
    states, rates, result = [], [], None
    for run in range(cfg.finetune_seeds):  # one start (init_seed), each run its own draws
        tune = PixelTuneConfig(
            epochs=cfg.finetune_epochs, keep="last_averaged", seed=cfg.seed + run,
            init_seed=cfg.seed, hidden=cfg.hidden, dropout=cfg.dropout,
        )  # fmt: skip
        runs = f"run {run + 1}/{cfg.finetune_seeds}, " if cfg.finetune_seeds > 1 else ""

        def show(epoch: int, record: dict[str, Any], runs: str = runs) -> None:
            if progress:
                rate = record["ema_val_review_rate" if epoch else "val_review_rate"]
                print(f"fine-tune {runs}epoch {epoch}/{cfg.finetune_epochs}: "
                      f"validation review @99% {rate:.3f}")  # fmt: skip

        result = fine_tune_pixels(images, y, train, val, tune, on_epoch=show)
        states.append({k: v.detach().cpu().clone() for k, v in result.model.state_dict().items()})
        rates.append(float(result.history[-1].get("ema_val_review_rate", np.nan)))
    assert result is not None
    model = result.model
    if len(states) > 1:  # the soup: the runs' mean weights, BatchNorm measured again
        model = make_soup(states, images, train, replace(tune, seed=cfg.seed))
        figures = validation_record(score_pixels(model, images, val), y[val])
        rate = figures["val_review_rate"]
        if progress:
            print(f"soup of {len(states)}: validation review @99% {rate:.3f}")
        if rate > max(rates):  # seen with 1-epoch runs: too short to share one basin
            warnings.warn(
                f"the soup of {len(states)} runs reviews {rate:.3f} of validation at 99% recall, "
                f"more than each run alone ({', '.join(f'{r:.3f}' for r in rates)}): soups were "
                "measured on 12-epoch runs (bench/gpu_soup.py); shorter runs may not average well",
                stacklevel=2,
            )
        result.history = [*result.history, {"epoch": cfg.finetune_epochs, "soup": len(states),
                                            "runs_val_review_rate": rates, **figures}]  # fmt: skip
    model = model.cpu().eval()
    head = MLPHead(  # the settings it was trained with (saved with the bundle)
        cfg.hidden, "relu", cfg.dropout, epochs=tune.epochs, lr=tune.lr_head,
        weight_decay=tune.weight_decay, batch_size=tune.batch_size, imbalance="balanced",
        seed=cfg.seed,
    )  # fmt: skip
    head.network_ = model.classifier
    head.n_features_in_ = model.backbone.config.embed_dim
    head.history_, head.best_epoch_, head.gradient_health_ = result.history, result.best_epoch, {}
    weights = save_tuned(model.backbone, Workdir.of(workdir).root / "backbones")
    return TunedBackbone(weights=weights, head=head)


@dataclass
class SplitArrays:
    """A split manifest with its embeddings, 0/1 labels and split names, row-aligned."""

    frame: pd.DataFrame
    X: np.ndarray  # (N, D) float32
    y: np.ndarray  # (N,) 0/1
    split: np.ndarray  # (N,) split names

    def rows(self, split: Split) -> np.ndarray:
        """Boolean mask of one split's rows."""
        return np.asarray(self.split == split.value)


def load_split_arrays(
    manifest: str | Path,
    *,
    workdir: Path | None = None,
    backbone: str = DEFAULT_BACKBONE,
    progress: bool = False,
) -> SplitArrays:
    """Read a split manifest and embed its photos (benches and diagnosis use this)."""
    frame = read_split_manifest(manifest)
    X = embed_manifest(frame, workdir=workdir, backbone=backbone, progress=progress)
    return SplitArrays(
        frame=frame,
        X=X,
        y=as_binary_labels(frame["label"].to_numpy()),
        split=frame["split"].astype(str).to_numpy(),
    )


def split_metrics(
    scores: np.ndarray,
    frame: pd.DataFrame,
    *,
    target_recall: float = CERTIFY.target_recall,
) -> dict[str, Any]:
    """Ranking and error metrics per split (and per source within train).

    Errors are given at 0.5 and at the operating threshold: the one that reaches
    `target_recall` on validation (what the product would use before calibration).
    """
    labels = as_binary_labels(frame["label"].to_numpy())
    splits = frame["split"].astype(str).to_numpy()
    val = splits == Split.VALIDATION.value
    operating = threshold_at_recall(scores[val], labels[val], recall=target_recall)
    out: dict[str, Any] = {"operating_threshold": operating, "splits": {}}
    for split in Split:
        mask = splits == split.value
        if not mask.any():
            continue
        row: dict[str, Any] = ranking_summary(scores[mask], labels[mask], recall=target_recall)
        row["error_at_0.5"] = error_rate(scores[mask], labels[mask], threshold=0.5)
        row["error_at_operating"] = error_rate(scores[mask], labels[mask], threshold=operating)
        row["recall_at_operating"] = (
            float((scores[mask & (labels == 1)] >= operating).mean())
            if labels[mask].any()
            else float("nan")
        )
        out["splits"][split.value] = row
    return out


def cascade_gate(
    first: np.ndarray, frame: pd.DataFrame, *, share: float, stop: float
) -> tuple[float, dict[str, Any]]:
    """A cascade's gate from the first stage's scores on the validation rows, and its record:
    the lower of the score that passes `share` of the validation negatives on to the second
    look and the `stop` quantile of the validation positives' scores (the first stage approves
    below it). Chosen before calibration, so the certificate counts every positive it stops."""
    y = as_binary_labels(frame["label"].to_numpy())
    val = frame["split"].astype(str).to_numpy() == Split.VALIDATION.value
    positives, negatives = first[val & (y == 1)], first[val & (y == 0)]
    if len(positives) == 0 or len(negatives) == 0:
        raise ValueError("a cascade's gate needs validation positives and negatives")
    by_share = float(np.quantile(negatives, 1.0 - share))
    by_stop = float(np.quantile(positives, stop))
    gate = min(by_share, by_stop)
    return gate, {
        "rule": "min(score passing refine_share of validation negatives, "
        "refine_stop quantile of validation positives)",
        "refine_share": share,
        "refine_stop": stop,
        "gate_by_share": by_share,
        "gate_by_stop": by_stop,
        "validation_positives": len(positives),
        "validation_positives_stopped": int((positives < gate).sum()),
        "validation_negatives_passed": float((negatives >= gate).mean()),
    }


def fit_head(
    X: np.ndarray,
    frame: pd.DataFrame,
    cfg: TrainConfig,
    *,
    on_epoch: EpochCallback | None = None,
    jobs: int = 1,
    extra: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[MLPHead | EnsembleHead, list[str]]:
    """The head `cfg` describes, fitted on the `train` rows with early stopping on `validation`,
    and the distinct vanishing-gradient warnings it raised. `jobs` > 1 fits an ensemble's
    members side by side in that many processes (the same heads, sooner); `extra` (X, y) adds
    training rows (the training photos' mirror images, `mirrored_train_rows`)."""
    if X.shape[0] != len(frame):
        raise ValueError(f"{X.shape[0]} embeddings for {len(frame)} manifest rows")
    y = as_binary_labels(frame["label"].to_numpy())
    split = frame["split"].astype(str).to_numpy()
    train, val = split == Split.TRAIN.value, split == Split.VALIDATION.value
    X_fit, y_fit = X[train], y[train]
    if extra is not None:
        X_fit, y_fit = np.concatenate([X_fit, extra[0]]), np.concatenate([y_fit, extra[1]])
    head = make_head(cfg, jobs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", VanishingGradientWarning)
        head.fit(X_fit, y_fit, X_val=X[val], y_val=y[val], on_epoch=on_epoch)
    messages = sorted({str(w.message) for w in caught if w.category is VanishingGradientWarning})
    return head, messages
