"""One tuned backbone, each head a fine-tuned bundle may keep: which should it be?

`photosieve train --finetune-epochs N` tunes Lite0 together with a classifier; the bundle's head
is then the product's 5-seed MLP fitted afresh on the tuned embeddings (`--finetune-head refit`),
the classifier tuned with the backbone (`tuned`), or the mean of the two heads' logits (`both`,
the default since this bench's two tuning seeds). Tuning costs ~1 h of this CPU, so instead of
tuning three times this bench takes a workdir trained with `--finetune-head tuned` or `both`,
recovers or fits the other heads on the *same* tuned embeddings (the workdir's cache; the refit
with the product's `fit_head`), and writes one sibling workdir per head (same split, same
backbone weights, each calibrated the product's way) for `bundle_draws.py` to compare on the
same draws. A tuned cascade's siblings are its first stage alone (`--refine-backbone` dropped),
so `-both` is the cascade without its second look:

    PYTHONPATH=src python bench/tuned_heads.py --workdir work-tuned   # → work-tuned-{refit,...}
    PYTHONPATH=src python bench/bundle_draws.py --workdirs work work-tuned-refit \\
        work-tuned-tuned work-tuned-both --out bench/results/bundle_draws_finetune12.json
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
from pathlib import Path
from typing import Any

import torch

from photosieve.bundle import ModelBundle
from photosieve.config import FINETUNE_HEADS, TrainConfig
from photosieve.learn.ensemble import EnsembleHead
from photosieve.learn.train import embed_manifest, fit_head, read_split_manifest, split_metrics
from photosieve.pipeline import calibrate_bundle
from photosieve.scoring import backbone_for


def bundle_settings(bundle: ModelBundle) -> dict[str, Any]:
    """The `TrainConfig` fields of a bundle's stored training config (`hidden` as a tuple)."""
    keys = {f.name for f in dataclasses.fields(TrainConfig)}
    settings = {k: v for k, v in bundle.train_config.items() if k in keys}
    return settings | {"hidden": tuple(settings["hidden"])}


def sibling_workdir(source: Path, out: Path, *, share_embeddings: bool = True) -> Path:
    """`out` beside `source` with its split (copied) and, with `share_embeddings`, its embeddings
    cache (a link: the cache is keyed by file hash and backbone id); returns `out`'s manifest."""
    (out / "data").mkdir(parents=True, exist_ok=True)
    for file in ("split.csv", "split.json"):
        shutil.copyfile(source / "data" / file, out / "data" / file)
    cache = out / "embeddings"
    if share_embeddings and not cache.exists():
        cache.symlink_to((source / "embeddings").resolve(), target_is_directory=True)
    return out / "data" / "split.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True, help="a tuned bundle's workdir")
    args = parser.parse_args()
    torch.set_num_threads(1)  # the heads are small (the train command's default)
    source = ModelBundle.load(args.workdir / "bundle")  # registers the tuned backbone
    kind = source.train_config.get("finetune_head")
    if source.backbone_weights is None or kind not in ("tuned", "both"):
        raise SystemExit(
            f"{args.workdir}/bundle: trained with --finetune-head {kind}; need tuned/both"
        )
    settings = bundle_settings(source)
    frame = read_split_manifest(args.workdir / "data" / "split.csv")
    X = embed_manifest(  # the tuned embeddings, from the workdir's cache
        frame, workdir=args.workdir, backbone=backbone_for(source.backbone_id), progress=True
    )
    if kind == "both":
        assert isinstance(source.head, EnsembleHead)
        refit, tuned = source.head.members_
    else:
        tuned = source.head
        refit, _ = fit_head(X, frame, TrainConfig(**settings | {"finetune_head": "refit"}))
    heads = {"refit": refit, "tuned": tuned, "both": EnsembleHead.from_members([refit, tuned])}
    assert set(heads) == set(FINETUNE_HEADS)
    for name, head in heads.items():
        out = args.workdir.with_name(f"{args.workdir.name}-{name}")
        manifest = sibling_workdir(args.workdir, out)  # the same tuned embeddings
        # a cascade's first stage alone (its gate was set for the "both" head's scores)
        cfg = TrainConfig(**settings | {"finetune_head": name, "refine_backbone": None})
        metrics = split_metrics(head.score(X), frame, target_recall=cfg.target_recall)
        bundle = dataclasses.replace(
            source, head=head, train_config=cfg.to_dict() | {"manifest": str(manifest.resolve())},
            metrics=metrics | {"best_epoch": head.best_epoch_}, policy=None, version="",
            refiner=None,
        )  # fmt: skip
        bundle = calibrate_bundle(bundle, manifest, workdir=out, progress=False)
        print(f"{name}: wrote {bundle.save(out / 'bundle')}")
        for split, row in metrics["splits"].items():
            print(f"  {split:12s} AP {row['average_precision']:.4f}  review@99% "
                  f"{row.get('review_rate_at_recall', float('nan')):.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
