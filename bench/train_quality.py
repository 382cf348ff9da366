"""Head quality on the benchmark: the product's MLP head vs scikit-learn logistic regression.

Same embeddings, same split (work/data/split.csv): the head `photosieve train` fits
(`TrainConfig()` defaults, early-stopped on validation) against the peer,
`StandardScaler + LogisticRegression(class_weight="balanced")`. Reported on the test split
(and validation): average precision and the review rate at 99% recall — raw, and at a
production prevalence of 1% (0.01·P(review | offensive) + 0.99·P(review | ok)) — plus the
ratio head / peer. `--imbalance-study` also trains single heads with weighted loss, balanced
sampling and neither (three seeds each) and compares them on validation only.

Writes bench/results/train_quality.json.

    .venv/bin/python bench/train_quality.py [--split work/data/split.csv] [--imbalance-study]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from photosieve.learn.metrics import (
    high_recall_review_rate,
    ranking_summary,
    threshold_at_recall,
)
from photosieve.learn.train import SplitArrays, TrainConfig, load_split_arrays, make_head
from photosieve.records import Split

RESULTS = Path(__file__).parent / "results" / "train_quality.json"


def summary(scores: np.ndarray, data: SplitArrays, split: Split) -> dict[str, float]:
    mask = data.rows(split)
    out = ranking_summary(scores[mask], data.y[mask], recall=0.99)
    out["high_recall_review_rate_90"] = high_recall_review_rate(scores[mask], data.y[mask])
    return out


def per_origin_recall(scores: np.ndarray, data: SplitArrays) -> dict[str, float]:
    """Recall per origin on test at the threshold reaching 99% recall on validation."""
    val, test = data.rows(Split.VALIDATION), data.rows(Split.TEST)
    t = threshold_at_recall(scores[val], data.y[val], recall=0.99)
    out: dict[str, float] = {}
    if "origin" not in data.frame.columns:
        return out
    origins = data.frame["origin"].astype(str).to_numpy()
    for origin in sorted(set(origins[test & (data.y == 1)])):
        m = test & (data.y == 1) & (origins == origin)
        out[origin] = float((scores[m] >= t).mean())
    return out


def fit_head(cfg: TrainConfig, data: SplitArrays) -> tuple[np.ndarray, float]:
    train, val = data.rows(Split.TRAIN), data.rows(Split.VALIDATION)
    started = time.perf_counter()
    head = make_head(cfg)
    head.fit(data.X[train], data.y[train], X_val=data.X[val], y_val=data.y[val])
    return head.score(data.X), time.perf_counter() - started


def fit_peer(data: SplitArrays) -> tuple[np.ndarray, float]:
    train = data.rows(Split.TRAIN)
    started = time.perf_counter()
    peer = make_pipeline(
        StandardScaler(), LogisticRegression(class_weight="balanced", max_iter=5000)
    ).fit(data.X[train], data.y[train])
    return peer.predict_proba(data.X)[:, 1], time.perf_counter() - started


def imbalance_study(data: SplitArrays, base: TrainConfig, seeds: int) -> dict[str, Any]:
    """Weighted loss vs balanced sampling vs neither: single heads, validation metrics only."""
    val = data.rows(Split.VALIDATION)
    out: dict[str, Any] = {}
    for method in ("weighted", "balanced", "none"):
        runs = []
        for seed in range(seeds):
            cfg = dataclasses.replace(base, imbalance=method, ensemble=1, seed=seed)
            scores, _ = fit_head(cfg, data)
            runs.append(summary(scores, data, Split.VALIDATION))
        out[method] = {
            "runs": runs,
            **{
                f"mean_{k}": statistics.fmean(r[k] for r in runs)
                for k in (
                    "review_rate_at_recall",
                    "high_recall_review_rate_90",
                    "average_precision",
                )
            },
        }
    out["winner_by_validation_high_recall_review_rate"] = min(
        ("weighted", "balanced", "none"), key=lambda m: out[m]["mean_high_recall_review_rate_90"]
    )
    out["validation_positives"] = int(data.y[val].sum())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", type=Path, default=Path("work/data/split.csv"))
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--imbalance-study", action="store_true")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per imbalance method")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not args.split.is_file():
        raise SystemExit(f"{args.split} not found: run `photosieve ingest` and `photosieve split`")
    cfg = TrainConfig()
    data = load_split_arrays(args.split, workdir=args.workdir, backbone=cfg.backbone)
    head_scores, head_seconds = fit_head(cfg, data)
    peer_scores, peer_seconds = fit_peer(data)
    result: dict[str, Any] = {
        "split": str(args.split),
        "head_config": cfg.to_dict(),
        "embeddings": f"{cfg.backbone} (head and peer see the same ones)",
        "peer": "StandardScaler + LogisticRegression(class_weight='balanced')",
        "fit_seconds": {"head": head_seconds, "peer": peer_seconds},
    }
    for split in (Split.VALIDATION, Split.TEST):
        head, peer = summary(head_scores, data, split), summary(peer_scores, data, split)
        result[split.value] = {
            "head": head,
            "peer": peer,
            "review_rate_ratio_head_over_peer": head["review_rate_at_recall"]
            / peer["review_rate_at_recall"],
            "review_rate_prev1pct_ratio_head_over_peer": head["review_rate_at_recall_prev1pct"]
            / peer["review_rate_at_recall_prev1pct"],
        }
    result["test_recall_per_origin"] = {
        "head": per_origin_recall(head_scores, data),
        "peer": per_origin_recall(peer_scores, data),
    }
    if args.imbalance_study:
        result["imbalance_study"] = imbalance_study(data, cfg, args.seeds)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    for split in ("validation", "test"):
        for who in ("head", "peer"):
            r = result[split][who]
            print(
                f"{split:10s} {who}: AP {r['average_precision']:.4f}  review@99% "
                f"{r['review_rate_at_recall']:.3f}  at 1% prevalence "
                f"{r['review_rate_at_recall_prev1pct']:.3f}"
            )
    if args.imbalance_study:
        print(
            "imbalance winner:",
            result["imbalance_study"]["winner_by_validation_high_recall_review_rate"],
        )


if __name__ == "__main__":
    main()
