"""A per-position head on Lite0's final feature map, trained with the firearm boxes, out of fold
(issue 11: "a per-position head on the feature map") → results/position_workload.json.

Today's head sees the avg+max pooled embedding: every channel pooled on its own, so "a gun-like
pattern *at one place*" is lost for a small gun. This bench trains a small ReLU MLP that scores
each of the 7 × 7 positions of the frozen Lite0 map (1,280 channels at 224 px, the same forward
pass the service already runs; the head adds ~2% of the model's multiply-adds), the photo's
logit being the maximum over positions (multiple-instance learning):

- a negative photo pushes its highest position down;
- a positive photo with firearm boxes (`../shared/data/bench/boxes.csv`: `granada-pistols`)
  pushes up its highest position *inside a box* — the head must find the gun, not the
  watermark or the shooting range around it; a positive without boxes, its highest position.

Same machinery as `certified_workload.py`: the 5 label-stratified folds over duplicate groups,
the workload plan's train / validation shares in each fold's pool (external icons in training
only), epochs chosen on the fold's validation slice, then 1,000 calibration/test draws at the
plan's sizes. Compared in the same run: today's head (`mlp1`, or the product's `mlp5` with
`--heads mlp5`) on avg+max, the position head alone, and their mean logit (one model pass).

    PYTHONPATH=src python bench/position_workload.py --workdir /tmp/runs/default --draws 1000
    PYTHONPATH=src python bench/position_workload.py --table
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bundle_draws import mean_logit
from certified_workload import _origin, plan_sizes, run_draws, validation_table
from oof_scores import Bench, Recipe, figures_only, fold_of, fold_parts, load_bench, oof_scores
from oof_scores import validation_figures as figures
from photosieve.data.plan import plan_by_workload

RESULTS = Path(__file__).parent / "results" / "position_workload.json"
BOXES = Path(__file__).resolve().parents[2] / "shared" / "data" / "bench" / "boxes.csv"
L0 = "efficientnet_lite0_avgmax"
GRID = 7  # Lite0's final map at 224 px


def feature_maps(bench: Bench, workdir: Path, batch: int = 64) -> np.ndarray:
    """(N, 49, 1280) float16: the frozen Lite0 map of every bench row (cached in `workdir`)."""
    import torch

    from photosieve.vision.backbone import backbone_config, create_backbone
    from photosieve.vision.preprocess import preprocess

    cache = workdir / "position_workload" / f"maps-{len(bench.frame)}.npy"
    if cache.is_file():
        return np.load(cache, mmap_mode="r")
    cfg = backbone_config(L0).preprocess
    model = create_backbone(L0).eval()
    out = np.zeros((len(bench.frame), GRID * GRID, 1280), np.float16)
    paths = list(bench.frame["path"])
    started = time.perf_counter()
    with torch.inference_mode():
        for at in range(0, len(paths), batch):
            x = torch.from_numpy(np.stack([preprocess(p, cfg) for p in paths[at : at + batch]]))
            fmap = model.forward_map(x)  # (B, 1280, 7, 7)
            out[at : at + len(x)] = fmap.flatten(2).transpose(1, 2).numpy().astype(np.float16)
            if at % (batch * 40) == 0:
                print(f"  maps {at + len(x)}/{len(paths)} ({time.perf_counter() - started:.0f} s)")
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, out)
    return out


def box_cells(bench: Bench, boxes_csv: Path = BOXES) -> np.ndarray:
    """(N, 49) bool: the map positions a firearm box covers (squash resize: fractions map to
    the grid directly); a box smaller than a cell marks the cell of its centre."""
    import pandas as pd

    boxes = pd.read_csv(boxes_csv)
    row_of = {Path(p).name: i for i, p in enumerate(bench.frame["path"])}
    cells = np.zeros((len(bench.frame), GRID, GRID), bool)
    edges = np.arange(GRID + 1) / GRID
    for b in boxes.itertuples():
        i = row_of.get(Path(b.path).name)
        if i is None:
            continue
        # a cell is covered when the box overlaps at least a quarter of it along each axis
        over_x = np.minimum(edges[1:], b.x_max) - np.maximum(edges[:-1], b.x_min)
        over_y = np.minimum(edges[1:], b.y_max) - np.maximum(edges[:-1], b.y_min)
        cols, rows = over_x >= 0.25 / GRID, over_y >= 0.25 / GRID
        if not cols.any():
            cols[min(GRID - 1, int((b.x_min + b.x_max) / 2 * GRID))] = True
        if not rows.any():
            rows[min(GRID - 1, int((b.y_min + b.y_max) / 2 * GRID))] = True
        cells[i] |= rows[:, None] & cols[None, :]
    return cells.reshape(len(bench.frame), GRID * GRID)


class PositionHead:
    """A ReLU MLP scoring each map position; the photo's logit is the max over positions.
    Positives with boxes take their max inside the boxes. Epochs chosen on a validation slice."""

    def __init__(self, hidden: int = 128, epochs: int = 20, lr: float = 1e-3, seed: int = 0):
        self.hidden, self.epochs, self.lr, self.seed = hidden, epochs, lr, seed

    def _net(self) -> Any:
        import torch

        torch.manual_seed(self.seed)
        return torch.nn.Sequential(
            torch.nn.Linear(1280, self.hidden),
            torch.nn.ReLU(),
            torch.nn.Dropout(0.2),
            torch.nn.Linear(self.hidden, 1),
        )

    def _positions(self, maps: np.ndarray, rows: np.ndarray) -> Any:
        import torch

        x = torch.from_numpy(np.asarray(maps[rows], dtype=np.float32))
        return (x - self.mean_) / self.std_

    def fit(
        self,
        maps: np.ndarray,
        train: np.ndarray,
        y: np.ndarray,
        cells: np.ndarray,
        val: np.ndarray,
    ) -> PositionHead:
        import copy

        import torch

        rng = np.random.default_rng(self.seed)
        sample = rng.choice(train, size=min(len(train), 2000), replace=False)
        some = np.asarray(maps[sample], dtype=np.float32).reshape(-1, 1280)
        self.mean_ = torch.from_numpy(some.mean(0))
        self.std_ = torch.from_numpy(some.std(0) + 1e-3)
        net = self._net()
        opt = torch.optim.AdamW(net.parameters(), lr=self.lr, weight_decay=1e-4)
        pos, neg = train[y[train] == 1], train[y[train] == 0]
        steps = max(1, len(train) // 256)
        best, self.history_ = (np.inf, None, 0), []
        for epoch in range(1, self.epochs + 1):
            net.train()
            for _ in range(steps):  # balanced batches: 128 positives, 128 negatives
                rows = np.r_[rng.choice(pos, 128), rng.choice(neg, 128)]
                logits = net(self._positions(maps, rows)).squeeze(-1)  # (B, 49)
                box = torch.from_numpy(cells[rows])
                has_box = box.any(1, keepdim=True)
                inside = logits.masked_fill(has_box & ~box, -1e4)
                top = inside.max(1).values
                target = torch.from_numpy(y[rows].astype(np.float32))
                loss = torch.nn.functional.binary_cross_entropy_with_logits(top, target)
                opt.zero_grad()
                loss.backward()
                opt.step()
            self.net_ = net
            val_review = figures(self.score(maps, val), y[val])["review_at_99_prev1pct"]
            self.history_.append(val_review)
            if val_review < best[0]:
                best = (val_review, copy.deepcopy(net.state_dict()), epoch)
        net.load_state_dict(best[1])
        self.net_, self.best_epoch_ = net, best[2]
        return self

    def score(self, maps: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Probabilities: the sigmoid of the highest position's logit."""
        import torch

        self.net_.eval()
        out = []
        with torch.inference_mode():
            for at in range(0, len(rows), 512):
                part = self.net_(self._positions(maps, rows[at : at + 512])).squeeze(-1)
                out.append(torch.sigmoid(part.max(1).values.double()).numpy())
        return np.concatenate(out) if out else np.zeros(0)


def position_oof(
    bench: Bench,
    maps: np.ndarray,
    cells: np.ndarray,
    plan: dict[Any, float],
    *,
    k: int,
    seed: int,
    epochs: int,
    cache_dir: Path,
) -> tuple[np.ndarray, dict[str, Any]]:
    """OOF scores of the position head (NaN for external rows) and its validation figures."""
    import torch

    boxes = "" if cells.any() else "-noboxes"
    tag = cache_dir / f"position-k{k}-s{seed}-e{epochs}-{len(bench.frame)}{boxes}"
    if tag.with_suffix(".npz").is_file():
        return np.load(tag.with_suffix(".npz"))["scores"], json.loads(
            tag.with_suffix(".json").read_text()
        )
    torch.set_num_threads(2)
    started = time.perf_counter()
    folds = fold_of(bench, k, seed)
    scores = np.full(len(bench.frame), np.nan)
    val_scores, val_labels, epochs_kept, curves = [], [], [], []
    for f in range(k):
        train, val = fold_parts(bench, folds, f, plan, seed)
        head = PositionHead(epochs=epochs, seed=seed).fit(
            maps, np.flatnonzero(train), bench.y, cells, np.flatnonzero(val)
        )
        test = np.flatnonzero(folds == f)
        scores[test] = head.score(maps, test)
        val_scores.append(head.score(maps, np.flatnonzero(val)))
        val_labels.append(bench.y[val])
        epochs_kept.append(head.best_epoch_)
        curves.append(head.history_)
        took = time.perf_counter() - started
        print(f"  position head: fold {f + 1}/{k}, epoch {head.best_epoch_} kept, "
              f"validation {min(head.history_):.3f} ({took:.0f} s)")  # fmt: skip
    per_fold = [figures(s, y) for s, y in zip(val_scores, val_labels, strict=True)]
    info = {
        "recipe": "position head (max over the 7×7 Lite0 map, boxes inside)",
        "epochs_kept": epochs_kept,
        "validation_curves": curves,
        "validation": {n: float(np.mean([p[n] for p in per_fold])) for n in per_fold[0]},
        "validation_per_fold": per_fold,
        "validation_scores_per_fold": [s.tolist() for s in val_scores],
        "validation_labels_per_fold": [y.tolist() for y in val_labels],
        "seconds": time.perf_counter() - started,
    }
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.savez(tag.with_suffix(".npz"), scores=scores)
    tag.with_suffix(".json").write_text(json.dumps(info))
    return scores, info


def combined_validation(a: dict[str, Any], b: dict[str, Any]) -> dict[str, float]:
    """The mean-logit recipe's figures on the same validation slices (what it is chosen on)."""
    per_fold = [
        figures(mean_logit([np.asarray(sa), np.asarray(sb)], eps=1e-15), np.asarray(ya))
        for sa, sb, ya in zip(
            a["validation_scores_per_fold"],
            b["validation_scores_per_fold"],
            a["validation_labels_per_fold"],
            strict=True,
        )
    ]
    return {n: float(np.mean([p[n] for p in per_fold])) for n in per_fold[0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("work"))
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--heads", nargs="+", default=["mlp1"], help="today's heads to compare")
    parser.add_argument("--no-boxes", action="store_true", help="plain MIL: the boxes unused")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--table", action="store_true", help="print the README rows and exit")
    args = parser.parse_args(argv)
    if args.table:
        results = json.loads(args.out.read_text())
        runs = {
            n: (r["validation"]["review_at_99_prev1pct"], r) for n, r in results["runs"].items()
        }
        print("\n".join(validation_table(runs)))
        return 0
    bench = load_bench(args.workdir / "data" / "ingested.csv", args.workdir, [L0])
    plan = plan_by_workload(int(bench.y[bench.primary].sum()))[0]
    sizes = plan_sizes(bench, plan, seed=args.seed)
    cache = args.workdir / "certified_workload"
    maps = feature_maps(bench, args.workdir)
    avg = np.asarray(maps[:64], np.float32).mean(1)
    print(
        "map mean vs cached avg embedding, max |Δ|:",
        float(np.abs(avg - bench.features[L0][:64, :1280]).max()),
    )
    cells = box_cells(bench)
    boxed = cells[cells.any(1)].sum(1)
    print(f"rows with boxes: {len(boxed)}, covered cells a boxed row: {boxed.mean():.1f}")
    if args.no_boxes:
        cells[:] = False
    pos_scores, pos_info = position_oof(
        bench, maps, cells, plan, k=args.folds, seed=args.seed, epochs=args.epochs, cache_dir=cache
    )
    mask = bench.primary
    origin = _origin(bench.frame["origin"].to_numpy()[mask])
    scored: dict[str, tuple[np.ndarray, dict[str, float], dict[str, Any]]] = {
        "position": (pos_scores, pos_info["validation"], pos_info)
    }
    for head in args.heads:
        recipe = Recipe(f"lite0_{head}", (L0,), head)
        s, info = oof_scores(
            bench, recipe, plan, k=args.folds, seed=args.seed, jobs=args.jobs, cache_dir=cache
        )
        scored[f"lite0_{head}"] = (s, info["validation"], info)
        both = mean_logit([s[mask], pos_scores[mask]], eps=1e-15)
        full = np.full(len(s), np.nan)
        full[mask] = both
        scored[f"lite0_{head}+position"] = (full, combined_validation(info, pos_info), {})
    from photosieve.learn.metrics import average_precision

    results: dict[str, Any] = {"machine": platform.node(), "draws": args.draws, "sizes": sizes}
    results["boxes_used"] = not args.no_boxes
    results["position_head"] = figures_only(pos_info)
    results["runs"] = {}
    for name, (s, val, _) in scored.items():
        results["runs"][name] = {
            "validation": val,
            "ap": average_precision(s[mask], bench.y[mask]),
            "targets": run_draws(
                s[mask], bench.y[mask], origin, sizes, draws=args.draws, seed=args.seed
            ),
        }
        print(name, json.dumps(val), flush=True)
        args.out.write_text(json.dumps(results, indent=2))
    runs = {n: (r["validation"]["review_at_99_prev1pct"], r) for n, r in results["runs"].items()}
    print("\n".join(validation_table(runs)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
