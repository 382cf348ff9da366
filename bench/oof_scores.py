"""Cross-fitted (out-of-fold) scores for every primary photo, for `certified_workload.py`.

Primary duplicate groups (`group_id` from `photosieve ingest`) are dealt into K folds, stratified
by label with the split planner's own group filler. For fold f, the other K−1 folds are the
training pool: from it, whole groups are drawn for `train` and for an early-stopping
`validation` slice in the shares a split plan gives them (so a plan that puts more positives in
calibration trains on fewer, as it would in the product); external photos go to training only,
in the share the plan gives `train` out of the training splits. The head is fitted with the full
recipe and scores fold f. Every primary photo is scored by a head that never saw its group.

Each fold's validation slice also yields the figures the recipes are *chosen* on (review rate
at 99% recall, high-recall partial area, AP), never the test draws.

`Extras` (for `shortcut_check.py`): edited copies of bench photos, each tied to the row it was
made from. Copies to *score* are scored by the head of their source row's fold (so no copy is
scored by a head that saw its original); copies to *train on* join a fold's training set when
their source row is in it (a training-only augmentation) — or, for a copy made from several
rows (a firearm pasted into another photo: `paste_workload.py`), when *all* of them are.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from photosieve.data.split import _assign_groups
from photosieve.learn.metrics import (
    average_precision,
    high_recall_review_rate,
    review_rate_at_recall,
)
from photosieve.records import PRIMARY_SOURCE, Label, Split

# mlp1s1: one head, seed 1 (seed noise); mlp1tp / mlp1tpw: one head with the top-push term,
# strong / weak (TOP_PUSH); …s1: seed 1
TOP_PUSH = {
    "mlp1tp": {"top_push": 1.0, "top_push_k": 8},
    "mlp1tpw": {"top_push": 0.3, "top_push_k": 4},
}
HEADS = ("mlp5", "mlp10", "mlp1", "mlp1s1", *TOP_PUSH, *(f"{h}s1" for h in TOP_PUSH), "logreg")
# "<head>+refit": the head chosen as usual (early stopping on the fold's validation slice), then
# fitted again on training + validation rows for the epochs it kept (`refit_head`); "mlp5+refit":
# one head chosen, five (seeds 0–4) refitted for its epochs (bench/refit_workload.py)
REFIT = "+refit"


@dataclass(frozen=True)
class Recipe:
    """Features (cached backbone embeddings, concatenated) and a head."""

    name: str
    backbones: tuple[str, ...]
    head: str  # "mlp5" (today's: TrainConfig() 5-seed ensemble), "mlp1", "mlp1s1", "logreg"
    external: bool = True  # train on the external icons too (False: primary photos only)


@dataclass(frozen=True)
class Extras:
    """Edited photos tied to bench rows: `score` name → (X (M, D), source row (M,)); `train`:
    (X (T, D), y (T,), source rows (T,) or (T, S)) added to training where every source row
    of the copy trains."""

    score: dict[str, tuple[np.ndarray, np.ndarray]]
    train: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    tag: str = ""  # names the extras in the cache key

    def train_part(self, train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.train is None:
            return np.zeros((0, 0), np.float32), np.zeros(0, np.int64)
        X, y, rows = self.train
        keep = train[rows] if rows.ndim == 1 else train[rows].all(axis=1)
        return X[keep], y[keep]


@dataclass
class Bench:
    """The ingested bench with per-backbone embeddings aligned to its rows."""

    frame: pd.DataFrame
    y: np.ndarray  # (N,) 0/1
    primary: np.ndarray  # (N,) bool
    features: dict[str, np.ndarray]  # backbone → (N, D) float32

    def design(self, recipe: Recipe) -> np.ndarray:
        return np.concatenate([self.features[b] for b in recipe.backbones], axis=1)


def load_bench(
    ingested: Path,
    workdir: Path,
    backbones: Sequence[str],
    primary_only: Sequence[str] = (),
    prefix_of: dict[str, tuple[str, int]] | None = None,
) -> Bench:
    """Read `ingested.csv` and take each backbone's embeddings (cached; computed if missing).

    Backbones in `primary_only` embed the primary photos only (external rows are NaN): for
    recipes that train without the external icons. `prefix_of` maps a backbone to (another
    backbone, n): its embedding is the first n columns of the other's (the gun-map backbone's
    first 2,560 columns are Lite0's avg+max, tests/vision/test_gunmap.py): no second pass.
    """
    from photosieve.vision.embed import embed_files

    frame = pd.read_csv(ingested)
    paths = [Path(p) for p in frame["path"]]
    primary = (frame["source"] == PRIMARY_SOURCE).to_numpy()
    derived = prefix_of or {}

    def embed(b: str) -> np.ndarray:
        rows = primary if b in primary_only else np.ones(len(frame), dtype=bool)
        some = embed_files(
            [p for p, keep in zip(paths, rows, strict=True) if keep],
            workdir=workdir,
            backbone=b,
            progress=False,
        )
        full = np.full((len(frame), some.shape[1]), np.nan, dtype=np.float32)
        full[rows] = some
        return full

    feats: dict[str, np.ndarray] = {}
    for b in backbones:
        source, n = derived.get(b, (b, 0))
        if source not in feats:
            feats[source] = embed(source)
        feats[b] = feats[source][:, :n] if n else feats[source]
    return Bench(
        frame=frame,
        y=(frame["label"] == Label.OFFENSIVE.value).to_numpy().astype(np.int64),
        primary=primary,
        features=feats,
    )


def _group_fill(
    frame: pd.DataFrame, mask: np.ndarray, fractions: Sequence[float], seed: int
) -> np.ndarray:
    """Per row of `frame`: index into `fractions` for rows in `mask` (whole groups), else −1."""
    out = np.full(len(frame), -1, dtype=np.int64)
    if not mask.any():
        return out
    sub = frame.loc[mask]
    codes, _ = pd.factorize(sub["group_id"], sort=True)
    pos = np.bincount(codes, weights=(sub["label"] == Label.OFFENSIVE.value).to_numpy())
    size = np.bincount(codes)
    rng = np.random.default_rng(seed)
    chosen = _assign_groups(
        pos.astype(np.int64), (size - pos).astype(np.int64), np.asarray(fractions, float), rng
    )
    out[np.flatnonzero(mask)] = chosen[codes]
    return out


def fold_of(bench: Bench, k: int, seed: int) -> np.ndarray:
    """Fold 0..k−1 per primary row (whole duplicate groups, label-stratified), −1 external."""
    return _group_fill(bench.frame, bench.primary, [1.0 / k] * k, seed)


def fold_parts(
    bench: Bench,
    folds: np.ndarray,
    f: int,
    plan: dict[Split, float],
    seed: int,
    *,
    external: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """(train mask, validation mask) for fold f: drawn from the other folds in the plan's shares."""
    k = int(folds.max()) + 1
    pool = bench.primary & (folds != f) & (folds >= 0)
    scale = 1.0 / (1.0 - 1.0 / k)  # the pool is (k−1)/k of the primary photos
    train_share = plan[Split.TRAIN] * scale
    val_share = plan[Split.VALIDATION] * scale
    if train_share + val_share > 1.0 + 1e-9:
        raise ValueError("the plan's train + validation shares exceed the fold's training pool")
    rest = max(0.0, 1.0 - train_share - val_share)
    part = _group_fill(bench.frame, pool, [train_share, val_share, rest], seed + 1000 * (f + 1))
    ext_share = plan[Split.TRAIN] / (plan[Split.TRAIN] + plan[Split.TRAIN_DEV])
    ext_part = _group_fill(bench.frame, ~bench.primary, [ext_share, 1.0 - ext_share], seed + 7 + f)
    train = (part == 0) | ((ext_part == 0) & external)
    return train, part == 1


def make_head(head: str) -> Any:
    """An unfitted head by name (today's recipe is `mlp5`: `TrainConfig()`'s ensemble)."""
    from photosieve.config import TrainConfig
    from photosieve.learn.head import LogisticHead, MLPHead
    from photosieve.learn.train import make_head as head_of

    if head == "mlp5":
        return head_of(TrainConfig())
    if head == "mlp10":  # twice today's ensemble (seeds 0–9)
        return head_of(TrainConfig(ensemble=10))
    if head == "mlp1":
        return head_of(TrainConfig(ensemble=1))
    if head == "mlp1s1":
        return head_of(TrainConfig(ensemble=1, seed=1))
    if head.removesuffix("s1") in TOP_PUSH:
        one = head_of(TrainConfig(ensemble=1, seed=int(head.endswith("s1"))))
        assert isinstance(one, MLPHead)  # one member: no ensemble around it
        return one.set_params(**TOP_PUSH[head.removesuffix("s1")])
    if head == "logreg":
        return LogisticHead(C=0.05, imbalance="weighted", max_iter=300)
    raise ValueError(f"unknown head {head!r}; known: {', '.join(HEADS)}")


def _fit_fold(args: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]) -> Any:
    import torch

    torch.set_num_threads(1)
    X_train, y_train, X_val, y_val, X_test, head = args
    base = head.removesuffix(REFIT)
    members = 5 if head.endswith(REFIT) and base == "mlp5" else 1
    if members > 1:  # the product's refit: one chosen head, then its ensemble refitted
        base = "mlp1"
    model = make_head(base).fit(X_train, y_train, X_val=X_val, y_val=y_val)
    val_scores = model.score(X_val)  # the chosen head's: what recipes are compared on
    if head.endswith(REFIT):
        X_dev, y_dev = np.r_[X_train, X_val], np.r_[y_train, y_val]
        model = refit_head(model, X_dev, y_dev, members=members)
    return model.score(X_test), val_scores


def refit_head(chosen: Any, X: np.ndarray, y: np.ndarray, *, members: int = 1) -> Any:
    """`chosen` (one head fitted with early stopping on a validation slice) fitted again on
    (X, y) with its own settings for the epochs it kept (an MLP; nothing is chosen on (X, y)):
    `members` heads with seeds `seed`, `seed` + 1, … (their mean logit when more than one).
    scikit-learn's `refit=True` once a search is over."""
    from photosieve.learn.ensemble import EnsembleHead

    params = chosen.get_params()
    if "epochs" in params:
        params["epochs"] = max(1, int(chosen.best_epoch_))
    heads = [
        type(chosen)(**params | ({"seed": params["seed"] + i} if "seed" in params else {}))
        .fit(X, y)
        for i in range(members)
    ]  # fmt: skip
    return heads[0] if members == 1 else EnsembleHead.from_members(heads)


def figures_only(info: dict[str, Any]) -> dict[str, Any]:
    """An `oof_scores` info less its per-fold validation scores and labels (megabytes, kept in
    the cache for a cascade's gate): what a results file keeps."""
    return {k: v for k, v in info.items() if k not in PER_FOLD_ARRAYS}


PER_FOLD_ARRAYS = ("validation_scores_per_fold", "validation_labels_per_fold")


def validation_figures(scores: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """What recipes are chosen on: figures on the early-stopping validation slices."""
    return {
        "review_at_99_prev1pct": review_rate_at_recall(scores, y, recall=0.99, prevalence=0.01),
        "high_recall_review": high_recall_review_rate(scores, y),
        "ap": average_precision(scores, y),
    }


def oof_scores(
    bench: Bench,
    recipe: Recipe,
    plan: dict[Split, float],
    *,
    k: int = 5,
    seed: int = 0,
    jobs: int = 2,
    cache_dir: Path | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """(scores (N,) with NaN for external rows, info incl. validation figures and seconds)."""
    scores, _, info = oof_scores_with_extras(
        bench, recipe, plan, k=k, seed=seed, jobs=jobs, cache_dir=cache_dir
    )
    return scores, info


def _cache_tag(bench: Bench, recipe: Recipe, plan: dict[Split, float], k: int, seed: int) -> str:
    key = json.dumps(
        [
            recipe.backbones,
            recipe.head,
            sorted((s.value, round(v, 6)) for s, v in plan.items()),
            k,
            seed,
            len(bench.frame),
        ]
        + ([] if recipe.external else ["primary-only"])
    )
    return f"{recipe.name}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


def oof_scores_with_extras(
    bench: Bench,
    recipe: Recipe,
    plan: dict[Split, float],
    *,
    k: int = 5,
    seed: int = 0,
    jobs: int = 2,
    cache_dir: Path | None = None,
    extras: Extras | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, Any]]:
    """`oof_scores` plus the scores of the extras' copies (name → (M,)), each by its source
    row's fold head. Score-only extras leave the primary scores (and their cache) unchanged."""
    import time

    plain = _cache_tag(bench, recipe, plan, k, seed)
    tag = f"{plain}-{extras.tag}" if extras is not None else plain
    if cache_dir is not None and (cache_dir / f"{tag}.npz").is_file():
        saved = np.load(cache_dir / f"{tag}.npz")
        got = {n[6:]: saved[n] for n in saved.files if n.startswith("extra_")}
        return saved["scores"], got, json.loads((cache_dir / f"{tag}.json").read_text())
    started = time.perf_counter()
    X = bench.design(recipe)
    folds = fold_of(bench, k, seed)
    names = sorted(extras.score) if extras is not None else []
    jobs_args, tests, vals, picks = [], [], [], []
    for f in range(k):
        train, val = fold_parts(bench, folds, f, plan, seed, external=recipe.external)
        test = folds == f
        X_train, y_train = X[train], bench.y[train]
        X_test, pick = [X[test]], {}
        if extras is not None:
            X_add, y_add = extras.train_part(train)
            if len(y_add):
                X_train, y_train = np.r_[X_train, X_add], np.r_[y_train, y_add]
            for name in names:
                X_e, rows = extras.score[name]
                pick[name] = folds[rows] == f
                X_test.append(X_e[pick[name]])
        jobs_args.append(
            (X_train, y_train, X[val], bench.y[val], np.concatenate(X_test), recipe.head)
        )
        tests.append(test)
        vals.append(val)
        picks.append(pick)
    scores = np.full(len(bench.frame), np.nan)
    extra_scores = {n: np.full(len(extras.score[n][1]), np.nan) for n in names} if extras else {}
    val_scores: list[np.ndarray] = []
    val_labels: list[np.ndarray] = []
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for test, val, pick, (s_test, s_val) in zip(
            tests, vals, picks, pool.map(_fit_fold, jobs_args), strict=True
        ):
            scores[test] = s_test[: test.sum()]
            at = int(test.sum())
            for name in names:
                m = int(pick[name].sum())
                extra_scores[name][pick[name]] = s_test[at : at + m]
                at += m
            print(
                f"  {recipe.name}: fold {len(val_scores) + 1}/{k} scored "
                f"({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
            val_scores.append(s_val)
            val_labels.append(bench.y[val])
    per_fold = [validation_figures(s, y) for s, y in zip(val_scores, val_labels, strict=True)]
    info: dict[str, Any] = {
        "recipe": recipe.name,
        "backbones": list(recipe.backbones),
        "head": recipe.head,
        "k": k,
        "train_positives_per_fold": [int(a[1].sum()) for a in jobs_args],
        "train_photos_per_fold": [len(a[1]) for a in jobs_args],
        "validation_positives_per_fold": [int(a[3].sum()) for a in jobs_args],
        "validation": {
            name: float(np.mean([fig[name] for fig in per_fold])) for name in per_fold[0]
        },
        "validation_per_fold": per_fold,
        # a cascade's gate is chosen on these, as `photosieve train` does (cascade_product.py)
        "validation_scores_per_fold": [s.tolist() for s in val_scores],
        "validation_labels_per_fold": [y.tolist() for y in val_labels],
        "seconds": time.perf_counter() - started,
    }
    if extras is not None:
        info["extras"] = {"tag": extras.tag, "trained_on_extra": extras.train is not None}
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        saves = [(tag, extra_scores)]
        if extras is not None and extras.train is None:
            saves.append((plain, {}))  # the primary scores are those of the plain recipe
        for name, extra in saves:
            arrays = {"scores": scores, **{f"extra_{n}": v for n, v in extra.items()}}
            about = info if extra else {k: v for k, v in info.items() if k != "extras"}
            np.savez(cache_dir / f"{name}.npz", **arrays)  # type: ignore[arg-type]
            (cache_dir / f"{name}.json").write_text(json.dumps(about, indent=2))
    return scores, extra_scores, info
