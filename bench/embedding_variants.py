"""Which embedding of the same backbone ranks the hardest offensive photos best?

Compares pooled-feature variants of EfficientNet-Lite0 (cached by `bench/variant_features.py`
in work/variants/: average, max and GeM pools of the final 1280×7×7 map, earlier blocks' pools,
each for the photo and its mirror) with the same two heads: the product's head
(`TrainConfig()` defaults: a 5-seed MLP ensemble early-stopped on validation) and the peer,
`StandardScaler + LogisticRegression(class_weight="balanced")`.

Selection is on validation only: review rate at 99% recall (with 61 positives: the rank of the
lowest positive), the mean review rate over 90–100% recall (steadier), AP, the share of
negatives above each of the lowest positives; and "certified-style": the threshold a
`RecallCertifier` (99% recall, 95% confidence) sets on the calibration split, with the review
rate it gives on calibration itself and on validation. `--test A,B` adds test figures for the
named variants (report once, for the chosen one and the current one).

`--seed N` repeats the MLP with other seeds (sections `validation_seedN`, `test_seedN`): the
certified figure rests on the single lowest calibration positive and swings with the seed, so
variants are compared on the mean over repeats (`summary_mean_over_seeds`).

Writes bench/results/embedding_variants.json (merged with what an earlier run wrote).

    .venv/bin/python bench/embedding_variants.py [--variants avg,avgmax] [--test avg,avgmax]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from photosieve.learn.metrics import (
    as_binary_labels,
    average_precision,
    high_recall_review_rate,
    review_rate_at_recall,
)
from photosieve.learn.train import TrainConfig, make_head
from photosieve.policy.certify import RecallCertifier
from photosieve.records import Split

RESULTS = Path(__file__).parent / "results" / "embedding_variants.json"
PREVALENCE = 0.01


@dataclass(frozen=True)
class Variant:
    """An embedding built from cached pools; `tta` averages photo and mirror, `flip_train`
    adds the mirror of every training photo as an extra training row."""

    description: str
    pools: tuple[str, ...]
    tta: bool = False
    flip_train: bool = False


VARIANTS: dict[str, Variant] = {
    "avg": Variant("global average pool of the final 1280×7×7 map (current)", ("avg",)),
    "max": Variant("global max pool of the final map", ("max",)),
    "gem3": Variant("GeM pool (p=3) of the final map", ("gem3",)),
    "avgmax": Variant("average and max pools concatenated (2560-d)", ("avg", "max")),
    "avg_tta": Variant("average pool, mean of photo and mirror", ("avg",), tta=True),
    "avg_flipaug": Variant(
        "average pool, mirrors as extra training rows, mean of photo and mirror at scoring",
        ("avg",),
        tta=True,
        flip_train=True,
    ),
    "avgmax_tta": Variant("avg+max pools, mean of photo and mirror", ("avg", "max"), tta=True),
    "avg_multilayer": Variant(
        "average pool + avg/max pools of stage 7 (320-d) and stage 5 (112-d, 14×14)",
        ("avg", "s7avg", "s7max", "s5avg", "s5max"),
    ),
    "avgmax_multilayer": Variant(
        "avg+max pools of the final map + avg/max pools of stages 7 and 5",
        ("avg", "max", "s7avg", "s7max", "s5avg", "s5max"),
    ),
    "avgmax_multilayer_tta": Variant(
        "avgmax_multilayer, mean of photo and mirror",
        ("avg", "max", "s7avg", "s7max", "s5avg", "s5max"),
        tta=True,
    ),
}
SEED = {"value": 0}  # the MLP ensemble's first seed (--seed: a repeat with other seeds)


@dataclass
class Bench:
    frame: pd.DataFrame
    y: np.ndarray
    split: np.ndarray
    folder: Path

    def rows(self, split: Split) -> np.ndarray:
        return np.asarray(self.split == split.value)

    def pool(self, view: str, name: str) -> np.ndarray:
        return np.load(self.folder / f"{view}_{name}.npy").astype(np.float32)

    def features(self, variant: Variant, view: str) -> np.ndarray:
        return np.concatenate([self.pool(view, p) for p in variant.pools], axis=1)

    def design(self, variant: Variant) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(scoring features for every row, training features, training labels)."""
        orig = self.features(variant, "orig")
        flip = self.features(variant, "flip") if variant.tta or variant.flip_train else orig
        scoring = (orig + flip) / 2.0 if variant.tta else orig
        train = self.rows(Split.TRAIN)
        if variant.flip_train:
            X_train = np.concatenate([orig[train], flip[train]])
            y_train = np.concatenate([self.y[train], self.y[train]])
        else:
            X_train, y_train = scoring[train], self.y[train]
        return scoring, X_train, y_train


def load_bench(split_csv: Path, folder: Path) -> Bench:
    frame = pd.read_csv(split_csv)
    if not (folder / "orig_avg.npy").is_file():
        raise SystemExit(f"no variant cache in {folder}: run bench/variant_features.py first")
    return Bench(
        frame=frame,
        y=as_binary_labels(frame["label"].to_numpy()),
        split=frame["split"].astype(str).to_numpy(),
        folder=folder,
    )


def fit_mlp(bench: Bench, scoring: np.ndarray, X_train: np.ndarray, y_train: np.ndarray) -> Any:
    val = bench.rows(Split.VALIDATION)
    head = make_head(TrainConfig(seed=SEED["value"]))
    return head.fit(X_train, y_train, X_val=scoring[val], y_val=bench.y[val])


def fit_logreg(bench: Bench, scoring: np.ndarray, X_train: np.ndarray, y_train: np.ndarray) -> Any:
    model = make_pipeline(
        StandardScaler(), LogisticRegression(class_weight="balanced", max_iter=5000)
    )
    return model.fit(X_train, y_train)


def _score(model: Any, X: np.ndarray) -> np.ndarray:
    if isinstance(model, Pipeline):
        return np.asarray(model.predict_proba(X)[:, 1], dtype=np.float64)
    return np.asarray(model.score(X), dtype=np.float64)


HEADS: dict[str, Callable[..., Any]] = {"mlp_ensemble": fit_mlp, "logreg": fit_logreg}


def reviewed_share(scores: np.ndarray, labels: np.ndarray, t: float) -> dict[str, float]:
    """Review rate at threshold t: raw and at 1% prevalence, and the recall it keeps."""
    reviewed = scores >= t
    p_pos = float(reviewed[labels == 1].mean())
    p_neg = float(reviewed[labels == 0].mean())
    return {
        "review_rate": float(reviewed.mean()),
        "review_rate_prev1pct": PREVALENCE * p_pos + (1 - PREVALENCE) * p_neg,
        "recall": p_pos,
    }


def split_figures(scores: np.ndarray, labels: np.ndarray, certified_t: float) -> dict[str, Any]:
    negatives = np.sort(scores[labels == 0])
    lowest = np.sort(scores[labels == 1])[:5]
    above = 1.0 - np.searchsorted(negatives, lowest, side="left") / negatives.size
    return {
        "positives": int(labels.sum()),
        "average_precision": average_precision(scores, labels),
        "review_rate_at_99_recall": review_rate_at_recall(scores, labels, recall=0.99),
        "review_rate_at_99_recall_prev1pct": review_rate_at_recall(
            scores, labels, recall=0.99, prevalence=PREVALENCE
        ),
        "review_rate_at_95_recall": review_rate_at_recall(scores, labels, recall=0.95),
        "high_recall_review_rate_90": high_recall_review_rate(scores, labels),
        "negatives_above_lowest_positives": [round(float(a), 4) for a in above],
        "certified": reviewed_share(scores, labels, certified_t),
    }


def evaluate(bench: Bench, name: str, head: str, splits: tuple[Split, ...]) -> dict[str, Any]:
    variant = VARIANTS[name]
    scoring, X_train, y_train = bench.design(variant)
    started = time.perf_counter()
    model = HEADS[head](bench, scoring, X_train, y_train)
    seconds = time.perf_counter() - started
    scores = _score(model, scoring)
    cal = bench.rows(Split.CALIBRATION)
    cert = RecallCertifier(0.99, 0.95).fit(scores[cal], bench.y[cal])
    out: dict[str, Any] = {
        "dim": int(scoring.shape[1]),
        "fit_seconds": round(seconds, 1),
        "certified_threshold": cert.threshold_,
        "calibration_misses_allowed": int(cert.max_misses_),
    }
    for split in (Split.CALIBRATION, *splits):
        mask = bench.rows(split)
        out[split.value] = split_figures(scores[mask], bench.y[mask], cert.threshold_)
    return out


def _save(key: tuple[str, ...], value: dict[str, Any]) -> None:
    """Merge `value` into the results file at `key` (re-read first: runs may go side by side)."""
    result: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    node = result
    for part in key[:-1]:
        node = node.setdefault(part, {})
    if key:
        node[key[-1]] = value
    else:
        result.update(value)
    RESULTS.write_text(json.dumps(result, indent=2))


SUMMARY_KEYS = ("average_precision", "review_rate_at_99_recall", "high_recall_review_rate_90")


def summarise() -> None:
    """Mean over the seed repeats, per variant and head, of validation and calibration figures."""
    result: dict[str, Any] = json.loads(RESULTS.read_text())
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for section, table in result.items():
        if section.startswith("validation") and isinstance(table, dict):
            for name, heads in table.items():
                for head, figures in heads.items():
                    runs.setdefault((name, head), []).append(figures)
    out: dict[str, Any] = {}
    for (name, head), figs in sorted(runs.items()):
        row: dict[str, Any] = {"runs": len(figs)}
        for split in ("validation", "calibration"):
            for key in SUMMARY_KEYS:
                row[f"{split}_{key}"] = round(float(np.mean([f[split][key] for f in figs])), 4)
            certified = [f[split]["certified"]["review_rate"] for f in figs]
            row[f"{split}_certified_review_rate"] = round(float(np.mean(certified)), 4)
        out.setdefault(name, {})[head] = row
    _save(("summary_mean_over_seeds",), out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", type=Path, default=Path("work/data/split.csv"))
    parser.add_argument("--cache", type=Path, default=Path("work/variants"))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--heads", default=",".join(HEADS))
    parser.add_argument("--test", default="", help="variants to also report on test")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0, help="MLP seeds; ≠ 0: a repeat")
    args = parser.parse_args()
    SEED["value"] = args.seed
    section = "validation" if args.seed == 0 else f"validation_seed{args.seed}"
    torch.set_num_threads(args.threads)
    bench = load_bench(args.split, args.cache)
    _save(
        (),
        dict(
            benchmark="embedding_variants",
            split=str(args.split),
            backbone="efficientnet_lite0",
            heads={
                "mlp_ensemble": TrainConfig().to_dict(),
                "logreg": "StandardScaler + LogisticRegression(class_weight='balanced')",
            },
            selection="validation only; calibration tail as a secondary signal",
        ),
    )
    for name in [v for v in args.variants.split(",") if v]:
        for head in args.heads.split(","):
            figures = evaluate(bench, name, head, (Split.VALIDATION,))
            figures["description"] = VARIANTS[name].description
            _save((section, name, head), figures)
            v, c = figures["validation"], figures["calibration"]
            print(
                f"{name:16s} {head:13s} val AP {v['average_precision']:.4f} "
                f"rr@99 {v['review_rate_at_99_recall']:.3f} "
                f"hr90 {v['high_recall_review_rate_90']:.4f} "
                f"low5 {v['negatives_above_lowest_positives']} "
                f"cert val {v['certified']['review_rate']:.3f} "
                f"cert cal {c['certified']['review_rate']:.3f}",
                flush=True,
            )
    summarise()
    tests = [v for v in args.test.split(",") if v]
    if tests:
        for name in tests:
            for head in args.heads.split(","):
                figures = evaluate(bench, name, head, (Split.VALIDATION, Split.TEST))
                _save((section.replace("validation", "test"), name, head), figures)
                t = figures["test"]
                print(
                    f"TEST {name:16s} {head:13s} AP {t['average_precision']:.4f} "
                    f"rr@99 {t['review_rate_at_99_recall']:.3f} "
                    f"certified rr {t['certified']['review_rate']:.3f} "
                    f"(prev1% {t['certified']['review_rate_prev1pct']:.3f}, "
                    f"recall {t['certified']['recall']:.3f})",
                    flush=True,
                )


if __name__ == "__main__":
    main()
