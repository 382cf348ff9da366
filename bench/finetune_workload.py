"""Fine-tuned Lite0 tail vs frozen Lite0 + MLP, out of fold (issue 11) → finetune_workload.json.

The folds, plan shares and draws of `certified_workload.py` (K = 5, seed 0, workload plan):
for each fold, `learn.finetune.fine_tune` trains Lite0's stages 6–7 + head conv + a ReLU MLP
classifier on the fold's primary training slice (cached stride-16 trunk maps, V views per photo,
`learn.trunk_cache`), early-stops on the fold's validation slice (clean view, review rate at 99%
recall) and scores the held-out fold from its clean view: (a) with its own classifier; (b) with
`--refit`, today's MLP head (`mlp1`) fitted on the tuned backbone's embeddings of the same slices.
Baselines in the same run, same folds: frozen Lite0 avg+max + `mlp1` with the external icons
(today's recipe) and without them (`lite0_mlp1_noext`: like for like, the fine-tune trains on
primary photos only). Then 1,000 calibration/test draws at the plan's sizes (`run_draws`).

    PYTHONPATH=src nice -n 5 python bench/finetune_workload.py \\
        --ingested ../main/work/data/ingested.csv --workdir ../main/work --out work/finetune
    PYTHONPATH=src python bench/finetune_workload.py --table
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from certified_workload import RECIPES, _origin, plan_sizes, run_draws, validation_table
from oof_scores import fold_of, fold_parts, load_bench, make_head, oof_scores, validation_figures
from photosieve.data.plan import plan_by_workload
from photosieve.learn.finetune import FineTuneConfig, embed_maps, fine_tune, score_maps
from photosieve.learn.metrics import average_precision
from photosieve.learn.trunk_cache import build_trunk_cache
from photosieve.vision.backbone import create_backbone

RESULTS = Path(__file__).parent / "results" / "finetune_workload.json"
L0 = "efficientnet_lite0_avgmax"
BASELINES = ("lite0_mlp1", "lite0_mlp1_noext")


def run_fold(
    args: argparse.Namespace,
    maps: np.ndarray,
    y: np.ndarray,
    rows: dict[str, np.ndarray],
    cfg: FineTuneConfig,
    path: Path,
) -> dict[str, Any]:
    """Fine-tune on one fold (cached in `path`): test/val scores of (a) and (b), history."""
    if path.is_file():
        saved = np.load(path, allow_pickle=False)
        return {k: saved[k] for k in saved.files} | json.loads(
            path.with_suffix(".json").read_text()
        )
    started = time.perf_counter()

    def log(epoch: int, rec: dict[str, Any]) -> None:
        speed = f"loss {rec['loss']:.4f}  {rec['samples_per_s']:.1f} samples/s" if epoch else "warm"
        print(
            f"    epoch {epoch}: {speed}  val review@99 {rec['val_review_rate']:.4f} "
            f"AP {rec['val_ap']:.4f} ({time.perf_counter() - started:.0f} s)",
            flush=True,
        )

    result = fine_tune(maps, y, rows["train"], rows["val"], cfg, on_epoch=log)
    out = {
        "test_a": score_maps(result.model, maps, rows["test"]),
        "val_a": score_maps(result.model, maps, rows["val"]),
    }
    if result.tuned_state and result.best_tuned_epoch != result.best_epoch:
        tuned = copy.deepcopy(result.model)
        tuned.load_state_dict(result.tuned_state)
    else:
        tuned = result.model
    out |= {  # the best epoch ≥ 1: the tuned network even where the warm start won on val
        "test_t": score_maps(tuned, maps, rows["test"]),
        "val_t": score_maps(tuned, maps, rows["val"]),
    }
    if args.refit:
        torch.set_num_threads(2)
        emb = {k: embed_maps(result.model, maps, rows[k]) for k in ("train", "val", "test")}
        head = make_head("mlp1").fit(
            emb["train"], y[rows["train"]], X_val=emb["val"], y_val=y[rows["val"]]
        )
        out |= {"test_b": head.score(emb["test"]), "val_b": head.score(emb["val"])}
    about = {
        "history": result.history,
        "best_epoch": result.best_epoch,
        "best_tuned_epoch": result.best_tuned_epoch,
    }
    about["seconds"] = time.perf_counter() - started
    np.savez(path, **out)  # type: ignore[arg-type]
    path.with_suffix(".json").write_text(json.dumps(about, indent=2))
    return out | about


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ingested", type=Path, default=Path("work/data/ingested.csv"))
    parser.add_argument("--workdir", type=Path, default=Path("work"), help="frozen embeddings")
    parser.add_argument("--out", type=Path, default=Path("work/finetune"), help="caches")
    parser.add_argument("--views", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=FineTuneConfig.epochs)
    parser.add_argument("--samples-per-epoch", type=int, default=1536)
    parser.add_argument("--train-bn", action="store_true")
    parser.add_argument("--refit", action="store_true", help="also (b): mlp1 on tuned embeddings")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--only-folds", type=int, nargs="*", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--table", action="store_true", help="print the README rows and exit")
    args = parser.parse_args(argv)
    if args.table:
        print(table(json.loads(RESULTS.read_text())))
        return 0
    torch.set_num_threads(2)
    bench = load_bench(args.ingested, args.workdir, [L0])
    prim = np.flatnonzero(bench.primary)
    cache_row = np.full(len(bench.frame), -1)
    cache_row[prim] = np.arange(len(prim))
    paths = [Path(p) for p in bench.frame["path"].to_numpy()[prim]]
    maps = build_trunk_cache(
        paths, args.out / f"trunk-v{args.views}", create_backbone(L0), views=args.views
    )
    n_pos = int(bench.y[bench.primary].sum())
    plan = plan_by_workload(n_pos)[0]
    sizes = plan_sizes(bench, plan, seed=args.seed)
    folds = fold_of(bench, args.folds, args.seed)
    cfg = FineTuneConfig(
        epochs=args.epochs,
        samples_per_epoch=args.samples_per_epoch,
        train_bn=args.train_bn,
        seed=args.seed,
    )
    tag = f"v{args.views}-e{args.epochs}-s{args.samples_per_epoch}-bn{int(args.train_bn)}"
    y_prim = bench.y[prim]
    n = len(bench.frame)
    scores = {k: np.full(n, np.nan) for k in "atb"}
    val_figs: dict[str, list[dict[str, float]]] = {k: [] for k in "atb"}
    fold_info = []
    for f in args.only_folds if args.only_folds is not None else range(args.folds):
        train, val = fold_parts(bench, folds, f, plan, args.seed, external=False)
        rows = {k: cache_row[m] for k, m in (("train", train), ("val", val), ("test", folds == f))}
        print(f"fold {f}: train {len(rows['train'])} val {len(rows['val'])}", flush=True)
        out = run_fold(args, maps, y_prim, rows, cfg, args.out / f"fold-{tag}-{f}.npz")
        for k in "atb":
            if f"test_{k}" in out:
                scores[k][folds == f] = out[f"test_{k}"]
                val_figs[k].append(validation_figures(out[f"val_{k}"], y_prim[rows["val"]]))
        fold_info.append(
            {k: out[k] for k in ("best_epoch", "best_tuned_epoch", "seconds", "history")}
            | {"fold": f}
        )
    if args.only_folds is not None:
        return 0
    mask = bench.primary
    y, origin = bench.y[mask], _origin(bench.frame["origin"].to_numpy()[mask])
    # runs of other fine-tuning configs (tags) stay in the file; this run replaces its own
    earlier = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    results: dict[str, Any] = {
        k: v for k, v in earlier.items() if k.startswith(("finetune_", "config_", "folds_"))
    }
    results |= {"machine": platform.node(), "draws": args.draws, "sizes": sizes}
    results[f"config_{tag}"] = cfg.to_dict() | {"views": args.views}
    results[f"folds_{tag}"] = fold_info
    runs: dict[str, tuple[np.ndarray, dict[str, float]]] = {}
    for name in BASELINES:
        s, info = oof_scores(
            bench,
            RECIPES[name],
            plan,
            k=args.folds,
            seed=args.seed,
            jobs=args.jobs,
            cache_dir=args.out.parent / "certified_workload",
        )
        runs[name] = (s, info["validation"])
    names = (("a", "finetune_cls"), ("t", "finetune_cls_tuned"), ("b", "finetune_mlp1"))
    for k, name in names:
        if val_figs[k]:
            mean = {m: float(np.mean([v[m] for v in val_figs[k]])) for m in val_figs[k][0]}
            runs[f"{name}_{tag}"] = (scores[k], mean)
    for name, (s, val_mean) in runs.items():
        started = time.perf_counter()
        results[name] = {
            "validation": val_mean,
            "ap": average_precision(s[mask], y),
            "targets": run_draws(s[mask], y, origin, sizes, draws=args.draws, seed=args.seed + 1),
            "draw_seconds": time.perf_counter() - started,
        }
        print(name, json.dumps(val_mean), flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    print(table(results))
    return 0


def table(results: dict[str, Any]) -> str:
    """README rows: the validation figure recipes are chosen on, then the draws per target."""
    names = [k for k in results if isinstance(results[k], dict) and "targets" in results[k]]
    lines = validation_table(
        {n: (results[n]["validation"]["review_at_99_prev1pct"], results[n]) for n in names}
    )
    lines += ["", "| recipe | origin | positives | recall (test parts) | fine photos reviewed |"]
    lines += ["|---|---|---:|---:|---:|"]
    for name in [k for k in results if isinstance(results[k], dict) and "targets" in results[k]]:
        for o, e in results[name]["targets"]["0.99"]["per_origin"].items():
            rec = f"{e['recall_mean']:.4f}" if "recall_mean" in e else "—"
            fine = f"{e['fine_reviewed_mean']:.1%}" if "fine_reviewed_mean" in e else "—"
            lines.append(f"| {name} | {o} | {e['positives']:,} | {rec} | {fine} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
