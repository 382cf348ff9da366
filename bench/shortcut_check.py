"""Does the model look at the gun or at the stock-photo look? (issue 11 a) → shortcut_check.json.

Out-of-fold heads (`oof_scores.py`, the product's recipe: Lite0 avg+max, today's MLP config with
one seed, the workload planner's split shares, external icons in training only) score edited
copies of bench photos; each copy is scored by the head of its original's fold, so no head saw
the photo it scores. Edits (`shortcut_images.py`, written once as PNG under
`<workdir>/shortcut/`, embedded once):

1. `hidden`: every `granada-pistols` positive with its firearm boxes filled with its mean colour;
   `control`: the same box sizes at random places away from the firearm (photos whose boxes
   cover ≤ 35% of the frame), to tell "the gun is gone" from "a flat rectangle appeared";
2. `watermarked`: a random sample of primary negatives with a pasted stock-photo watermark;
3. per origin: score distributions and recall of the certified threshold.

Thresholds: `RecallCertifier` (99% recall, 95% confidence) on random calibration parts of the
plan's size drawn from the OOF pool (as `certified_workload.py`); each figure is reported as
mean / median / p90 over the draws. `--fix` retrains with watermarked copies of the training
folds' sampled negatives (training only) and measures again; `--gunmap` adds the gun-map
backbone (`efficientnet_lite0_gunmap`) to the same checks.

    PYTHONPATH=src nice -n 15 python bench/shortcut_check.py --workdir /tmp/model-work --fix
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from certified_workload import PREVALENCE, plan_sizes, run_draws
from oof_scores import Bench, Extras, Recipe, load_bench, oof_scores_with_extras
from photosieve.data.plan import plan_by_workload
from photosieve.learn.metrics import average_precision
from photosieve.policy.certify import RecallCertifier
from shortcut_images import fill_random_boxes, hide_boxes, stock_watermark

RESULTS = Path(__file__).parent / "results" / "shortcut_check.json"
SHEET = RESULTS.with_suffix(".jpg")  # what is left when a small gun is hidden
BENCH = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bench"
GUNMAP, L0 = "efficientnet_lite0_gunmap", "efficientnet_lite0_avgmax"
PREFIX = {L0: (GUNMAP, 2560)}  # avg+max = the gun-map embedding's first 2,560 columns
TODAY = Recipe("lite0_mlp1", (L0,), "mlp1")
GUNMAP_RECIPE = Recipe("lite0_gunmap_mlp1", (GUNMAP,), "mlp1")
CONTROL_MAX_AREA = 0.35
TARGET, CONFIDENCE = 0.99, 0.95


def make_edits(
    bench: Bench, boxes: pd.DataFrame, out: Path, n_watermarked: int, seed: int
) -> dict[str, tuple[list[Path], np.ndarray]]:
    """Write the edited copies (once) → name → (files, source rows in the bench frame)."""
    frame = bench.frame
    row_of = {Path(p).resolve(): i for i, p in enumerate(frame["path"])}
    by_photo = boxes.groupby("path")[["x_min", "y_min", "x_max", "y_max"]]
    jobs: dict[str, list[tuple[int, Path, Any]]] = {"hidden": [], "control": [], "watermarked": []}
    for rel, group in by_photo:
        row = row_of.get((BENCH / str(rel)).resolve())
        if row is None or not bench.primary[row]:
            continue
        bxs = [tuple(map(float, b)) for b in group.to_numpy()]
        area = sum((b[2] - b[0]) * (b[3] - b[1]) for b in bxs)
        jobs["hidden"].append((row, out / "hidden" / f"{row}.png", ("hide", bxs)))
        if area <= CONTROL_MAX_AREA:
            jobs["control"].append((row, out / "control" / f"{row}.png", ("control", bxs)))
    negatives = np.flatnonzero(bench.primary & (bench.y == 0))
    chosen = np.sort(np.random.default_rng(seed).choice(negatives, n_watermarked, replace=False))
    for row in chosen:
        jobs["watermarked"].append((int(row), out / "watermarked" / f"{row}.png", ("wm", None)))

    def write(job: tuple[int, Path, Any]) -> None:
        row, target, (kind, bxs) = job
        if target.is_file():
            return
        rng = np.random.default_rng([seed, row])
        with Image.open(frame["path"].iloc[row]) as im:
            photo = im.convert("RGB")
        if kind == "hide":
            edited = hide_boxes(photo, bxs)
        elif kind == "control":
            edited = fill_random_boxes(photo, bxs, rng)
        else:
            edited = stock_watermark(photo, rng)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp.png")
        edited.save(tmp)
        tmp.replace(target)

    with ThreadPoolExecutor(2) as pool:
        for name in jobs:
            list(pool.map(write, jobs[name]))
    return {
        name: ([j[1] for j in rows], np.array([j[0] for j in rows], dtype=np.int64))
        for name, rows in jobs.items()
    }


def box_area(bench: Bench, boxes: pd.DataFrame, rows: np.ndarray) -> np.ndarray:
    """Share of the frame the firearm boxes cover, per source row."""
    area = (boxes["x_max"] - boxes["x_min"]) * (boxes["y_max"] - boxes["y_min"])
    per = area.groupby(boxes["path"]).sum()
    by_row = {
        i: per.get(str(Path(p).relative_to(BENCH)), np.nan)
        for i, p in enumerate(bench.frame["path"])
        if p.startswith(str(BENCH))
    }
    return np.array([by_row[int(r)] for r in rows])


def context_sheet(
    hidden: np.ndarray, files: list[Path], area: np.ndarray, seed: int, out: Path = SHEET
) -> None:
    """24 random hidden-gun photos (boxes ≤ 25% of the frame) that still score ≥ 0.5."""
    left = np.flatnonzero((area <= 0.25) & (hidden >= 0.5))
    pick = np.random.default_rng(seed).choice(left, min(24, left.size), replace=False)
    sheet = Image.new("RGB", (6 * 160, 4 * 160), "white")
    for k, i in enumerate(pick):
        with Image.open(files[i]) as im:
            sheet.paste(im.convert("RGB").resize((160, 160)), ((k % 6) * 160, (k // 6) * 160))
    sheet.save(out, quality=80)


def certified_thresholds(
    scores: np.ndarray, y: np.ndarray, sizes: dict[str, int], draws: int, seed: int
) -> np.ndarray:
    """The certified threshold of each random calibration part of the plan's size."""
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    out = []
    for _ in range(draws):
        cal = np.r_[
            rng.choice(pos, sizes["calibration_pos"], replace=False),
            rng.choice(neg, sizes["calibration_neg"], replace=False),
        ]
        out.append(RecallCertifier(TARGET, CONFIDENCE).fit(scores[cal], y[cal]).threshold_)
    return np.array(out)


def spread(values: np.ndarray) -> dict[str, float]:
    v = np.asarray(values, dtype=float)
    return {
        "mean": float(v.mean()),
        "median": float(np.median(v)),
        "p10": float(np.quantile(v, 0.1)),
        "p90": float(np.quantile(v, 0.9)),
    }


def above(scores: np.ndarray, thresholds: np.ndarray) -> dict[str, float]:
    """Share of `scores` at or above each draw's threshold, summarised over the draws."""
    return spread((scores[None, :] >= thresholds[:, None]).mean(axis=1))


def compare(
    edited: np.ndarray, original: np.ndarray, thresholds: np.ndarray, op: float
) -> dict[str, Any]:
    """Edited copies vs their originals: score distributions and shares above the thresholds."""
    return {
        "photos": len(edited),
        "original_scores": spread(original),
        "edited_scores": spread(edited),
        "score_shift": spread(edited - original),
        "share_score_rose": float((edited > original).mean()),
        "original_above_certified": above(original, thresholds),
        "edited_above_certified": above(edited, thresholds),
        "original_above_99pct_point": float((original >= op).mean()),
        "edited_above_99pct_point": float((edited >= op).mean()),
        "original_above_half": float((original >= 0.5).mean()),
        "edited_above_half": float((edited >= 0.5).mean()),
    }


def measure(
    bench: Bench,
    scores: np.ndarray,
    extra: dict[str, np.ndarray],
    edits: dict[str, tuple[list[Path], np.ndarray]],
    boxes: pd.DataFrame,
    sizes: dict[str, int],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Every figure of the check for one recipe's OOF scores."""
    mask = bench.primary
    s, y = scores[mask], bench.y[mask]
    thresholds = certified_thresholds(s, y, sizes, args.draws, args.seed)
    op = float(np.quantile(s[y == 1], 1 - TARGET, method="lower"))  # 99% of the pool above
    out: dict[str, Any] = {
        "certified_threshold": spread(thresholds),
        "point_99pct": op,
        "negatives_above_certified": above(s[y == 0], thresholds),  # the fine photos reviewed
    }
    for name, (_, rows) in edits.items():
        out[name] = compare(extra[name], scores[rows], thresholds, op)
    rows = edits["hidden"][1]
    area = box_area(bench, boxes, rows)
    buckets = {"box ≤ 25%": area <= 0.25, "25–50%": (area > 0.25) & (area <= 0.5)}
    buckets["> 50%"] = area > 0.5
    out["hidden_by_box_area"] = {
        k: compare(extra["hidden"][m], scores[rows][m], thresholds, op) for k, m in buckets.items()
    }
    origin = bench.frame["origin"].str.split("/").str[0].to_numpy()
    wm_rows = edits["watermarked"][1]
    out["watermarked_by_origin"] = {
        o: compare(
            extra["watermarked"][origin[wm_rows] == o],
            scores[wm_rows][origin[wm_rows] == o],
            thresholds,
            op,
        )
        for o in sorted(set(origin[wm_rows]))
    }
    per_origin = {}
    for o in sorted(set(origin[mask & (bench.y == 1)])):
        pos = mask & (bench.y == 1) & (origin == o)
        vs_all = pos | (mask & (bench.y == 0))
        per_origin[o] = {
            "positives": int(pos.sum()),
            "scores": spread(scores[pos]) | {"p1": float(np.quantile(scores[pos], 0.01))},
            "recall_at_certified": above(scores[pos], thresholds),
            "ap_vs_all_negatives": average_precision(scores[vs_all], bench.y[vs_all]),
        }
    out["per_origin"] = per_origin
    draws = run_draws(
        s, y, origin[mask], sizes, draws=args.draws, seed=args.seed, targets=(TARGET,)
    )
    out["workload"] = {k: v for k, v in draws[f"{TARGET:g}"].items() if k != "per_origin"}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("work"))
    parser.add_argument("--draws", type=int, default=300)
    parser.add_argument("--watermarked", type=int, default=2000, help="negatives to watermark")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--fix", action="store_true", help="also train on watermarked negatives")
    parser.add_argument("--gunmap", action="store_true", help="also the gun-map backbone")
    args = parser.parse_args(argv)
    from photosieve.vision.embed import embed_files

    ingested = args.workdir / "data" / "ingested.csv"
    cache = args.workdir / "certified_workload"
    bench = load_bench(ingested, args.workdir, [GUNMAP, L0], prefix_of=PREFIX)
    boxes = pd.read_csv(BENCH / "boxes.csv")
    edits = make_edits(bench, boxes, args.workdir / "shortcut", args.watermarked, args.seed)
    embedded = {
        name: embed_files(files, workdir=args.workdir, backbone=GUNMAP, progress=False)
        for name, (files, _) in edits.items()
    }
    n_pos = int(bench.y[bench.primary].sum())
    plan = plan_by_workload(n_pos)[0]
    sizes = plan_sizes(bench, plan, seed=args.seed)
    results: dict[str, Any] = {
        "machine": platform.node(),
        "draws": args.draws,
        "target": TARGET,
        "confidence": CONFIDENCE,
        "prevalence": PREVALENCE,
        "sizes": sizes,
        "photos": {name: len(rows) for name, (_, rows) in edits.items()},
        "runs": {},
    }
    runs: list[tuple[str, Recipe, bool]] = [("today", TODAY, False)]
    if args.fix:
        runs.append(("watermark_fix", TODAY, True))
    if args.gunmap:
        runs.append(("gunmap", GUNMAP_RECIPE, False))
    for label, recipe, fix in runs:
        width = bench.design(recipe).shape[1]
        score = {n: (embedded[n][:, :width], edits[n][1]) for n in edits}
        train = None
        if fix:
            rows = edits["watermarked"][1]
            train = (embedded["watermarked"][:, :width], np.zeros(len(rows), np.int64), rows)
        extras = Extras(score=score, train=train, tag=f"shortcut{args.watermarked}" + "-fix" * fix)
        print(f"{label}: out-of-fold heads ({recipe.name})", flush=True)
        scores, extra, info = oof_scores_with_extras(
            bench,
            recipe,
            plan,
            k=args.folds,
            seed=args.seed,
            jobs=args.jobs,
            cache_dir=cache,
            extras=extras,
        )
        results["runs"][label] = {"recipe": info} | measure(
            bench, scores, extra, edits, boxes, sizes, args
        )
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2))
        if label == "today":
            files, rows = edits["hidden"]
            context_sheet(extra["hidden"], files, box_area(bench, boxes, rows), args.seed)
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
