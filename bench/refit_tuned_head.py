"""The same tuned backbone with the other head: which head should a fine-tuned bundle keep?

`photosieve train --finetune-epochs N` tunes Lite0 together with a classifier; the bundle's head
is then either that classifier (`--finetune-head tuned`) or the product's 5-seed MLP head fitted
afresh on the tuned backbone's embeddings (`refit`, the default). Tuning costs ~1 h of this CPU,
so instead of tuning twice this bench takes a workdir trained with `--finetune-head tuned`, fits
the refit head on the *same* tuned embeddings (the workdir's cache) with the product's
`fit_head`, and writes a sibling workdir (same split, same backbone weights, calibrated the
product's way) for `bundle_draws.py` to compare:

    PYTHONPATH=src python bench/refit_tuned_head.py --workdir work-tuned --out work-refit
    PYTHONPATH=src python bench/bundle_draws.py --workdirs work work-tuned work-refit \
        --out bench/results/bundle_draws_finetune12.json
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
from pathlib import Path

import torch

from photosieve.bundle import ModelBundle
from photosieve.config import TrainConfig
from photosieve.learn.train import embed_manifest, fit_head, read_split_manifest, split_metrics
from photosieve.pipeline import calibrate_bundle
from photosieve.scoring import backbone_for


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True, help="a tuned bundle's workdir")
    parser.add_argument("--out", type=Path, required=True, help="the refit bundle's workdir")
    args = parser.parse_args()
    torch.set_num_threads(1)  # the head is small (the train command's default)
    tuned = ModelBundle.load(args.workdir / "bundle")  # registers the tuned backbone
    if tuned.backbone_weights is None or tuned.train_config.get("finetune_head") != "tuned":
        raise SystemExit(f"{args.workdir}/bundle is not a bundle with the tuned head")
    keys = {f.name for f in dataclasses.fields(TrainConfig)}
    settings = {k: v for k, v in tuned.train_config.items() if k in keys}
    settings |= {"hidden": tuple(settings["hidden"]), "finetune_head": "refit"}
    cfg = TrainConfig(**settings)
    (args.out / "data").mkdir(parents=True, exist_ok=True)
    for name in ("split.csv", "split.json"):
        shutil.copyfile(args.workdir / "data" / name, args.out / "data" / name)
    cache = args.out / "embeddings"
    if not cache.exists():  # share the tuned embeddings (keyed by file hash and backbone id)
        cache.symlink_to((args.workdir / "embeddings").resolve(), target_is_directory=True)
    manifest = args.out / "data" / "split.csv"
    frame = read_split_manifest(manifest)
    # the tuned embeddings, from the tuned workdir's cache (computed by its train run)
    X = embed_manifest(
        frame, workdir=args.out, backbone=backbone_for(tuned.backbone_id), progress=True
    )
    head, _ = fit_head(X, frame, cfg)
    metrics = split_metrics(head.score(X), frame, target_recall=cfg.target_recall)
    refit = dataclasses.replace(
        tuned, head=head, train_config=cfg.to_dict() | {"manifest": str(manifest.resolve())},
        metrics=metrics | {"best_epoch": head.best_epoch_}, policy=None, version="",
    )  # fmt: skip
    refit = calibrate_bundle(refit, manifest, workdir=args.out, progress=True)
    print(f"wrote {refit.save(args.out / 'bundle')}")
    for split, row in metrics["splits"].items():
        print(f"{split:12s} AP {row['average_precision']:.4f}  review@99% "
              f"{row.get('review_rate_at_recall', float('nan')):.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
