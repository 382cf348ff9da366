"""Refit: does the head that serves gain from the rows its epochs were chosen on?

`photosieve train` chooses the head's epochs by early stopping on the validation slice, which
then trains nothing. A refit (scikit-learn's `refit=True`) would fit the served heads again on
train + train-dev + validation for those epochs. This bench measures that out of fold, with
`certified_workload.py`'s machinery (5 folds over duplicate groups, the workload plan, external
icons in training only, 1,000 calibration/test draws of the OOF pool): each head recipe against
itself refitted on its fold's training + validation rows (the folds have no train-dev slice):

- `mlp1` / `mlp1s1`: one head (seed 0 / 1) vs that head refitted for the epochs it kept;
- `mlp5`: today's 5-seed ensemble, each member early-stopped, vs `mlp5+refit` as a product
  default would train it — one head (seed 0) chosen by early stopping, five heads (seeds 0–4)
  fitted on training + validation for its epochs;
- `--plain` heads alone: `mlp10`, a 10-seed ensemble (does a bigger ensemble keep paying?).

Chosen on nothing but validation figures; the draws only measure. `--bundle WORKDIR` instead
refits a trained demo bundle's heads the same way on its own split (the first member chooses the
epochs; five heads on train + train-dev + validation) into `WORKDIR-refit`, calibrated, for
`bundle_draws.py` to compare on one split's paired draws:

    PYTHONPATH=src python bench/refit_workload.py --ingested work/data/ingested.csv \\
        --workdir work --cache work/refit_workload
    PYTHONPATH=src python bench/refit_workload.py --bundle work
    PYTHONPATH=src python bench/bundle_draws.py --workdirs work work-refit --out /tmp/bd.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from certified_workload import L0, measure, validation_table
from oof_scores import REFIT, Recipe, load_bench, refit_head
from photosieve.data.plan import plan_by_workload
from photosieve.records import Split

REFIT_SPLITS = (Split.TRAIN, Split.TRAIN_DEV, Split.VALIDATION)

RESULTS = Path(__file__).parent / "results" / "refit_workload.json"
HEADS = ("mlp1", "mlp1s1", "mlp5")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ingested", type=Path)
    parser.add_argument("--workdir", type=Path, help="its embeddings cache")
    parser.add_argument("--bundle", type=Path, help="a demo workdir: refit its bundle's heads")
    parser.add_argument("--cache", type=Path, default=Path("work/refit_workload"))
    parser.add_argument("--heads", nargs="+", default=list(HEADS))
    parser.add_argument("--plain", nargs="*", default=["mlp10"],
                        help="heads measured alone (mlp10: a 10-seed ensemble)")  # fmt: skip
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.bundle is not None:
        print(f"wrote {refit_bundle(args.bundle)}")
        return
    if args.ingested is None or args.workdir is None:
        parser.error("--ingested and --workdir (or --bundle)")
    bench = load_bench(args.ingested, args.workdir, [L0])
    plan = plan_by_workload(int(bench.y[bench.primary].sum()))[0]
    results: dict[str, Any] = {"machine": platform.node(), "draws": args.draws, "heads": {}}
    groups = [(head, (head, head + REFIT)) for head in args.heads]
    groups += [(name, (name,)) for name in args.plain]
    for head, names in groups:
        pair = {}
        for name in names:
            r = measure(bench, Recipe(f"lite0_{name}", (L0,), name), plan, name, args)
            r.pop("_plan")
            for key in ("validation_scores_per_fold", "validation_labels_per_fold"):
                r["recipe"].pop(key)  # the per-photo arrays (the cache keeps them)
            pair[name] = r
        results["heads"][head] = pair
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1, default=float))
    print(table(results))


def refit_bundle(workdir: Path) -> Path:
    """`<workdir>-refit`: the bundle's first head chooses the epochs, five heads (its seed + 0…4)
    are fitted on train + train-dev + validation for them, calibrated like the product does."""
    import dataclasses

    import torch

    from photosieve.bundle import ModelBundle
    from photosieve.learn.ensemble import EnsembleHead
    from photosieve.learn.metrics import as_binary_labels
    from photosieve.learn.train import embed_manifest, read_split_manifest, split_metrics
    from photosieve.pipeline import calibrate_bundle
    from photosieve.scoring import backbone_for
    from tuned_heads import sibling_workdir

    torch.set_num_threads(2)
    source = ModelBundle.load(workdir / "bundle")
    if not isinstance(source.head, EnsembleHead) or source.refiner is not None:
        raise SystemExit(f"{workdir}/bundle: need a one-stage bundle with an ensemble head")
    frame = read_split_manifest(workdir / "data" / "split.csv")
    X = embed_manifest(frame, workdir=workdir, backbone=backbone_for(source.backbone_id),
                       progress=False)  # fmt: skip
    y = as_binary_labels(frame["label"].to_numpy())
    dev = frame["split"].isin([s.value for s in REFIT_SPLITS]).to_numpy()
    chosen = source.head.members_[0]
    head = refit_head(chosen, X[dev], y[dev], members=len(source.head.members_))
    out = workdir.with_name(f"{workdir.name}-refit")
    manifest = sibling_workdir(workdir, out)  # the same embeddings
    bundle = dataclasses.replace(
        source, head=head, policy=None, version="",
        train_config=source.train_config | {"manifest": str(manifest.resolve()),
                                            "refit_epochs": int(chosen.best_epoch_)},
        metrics=split_metrics(head.score(X), frame),
    )  # fmt: skip
    bundle = calibrate_bundle(bundle, manifest, workdir=out, progress=False)
    return bundle.save(out / "bundle")


def table(results: dict[str, Any]) -> str:
    """bench/README rows (`certified_workload.validation_table`), every head and target."""
    runs = {
        name: (r["recipe"]["validation"]["review_at_99_prev1pct"], r)
        for pair in results["heads"].values()
        for name, r in pair.items()
    }
    return "\n".join(validation_table(runs, first="head"))


if __name__ == "__main__":
    main()
