"""Why the head uses ReLU: the same deep head with sigmoid vs ReLU on the benchmark embeddings.

Trains an 8-hidden-layer MLP twice on the bench split's `train` rows — identical widths, seed,
optimiser and epochs; only the activation differs — and records each layer's mean weight-gradient
norm and the validation review rate at 99% recall per epoch. With sigmoid, the gradient reaching
the first layer is orders of magnitude below the last layer's (vanishing gradients) and the head
learns little; with ReLU (He init) the norms stay within an order of magnitude.

Writes bench/results/activations.json and bench/results/activations.png.

    .venv/bin/python bench/activations.py [--split work/data/split.csv] [--epochs 20]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from photosieve.learn.grads import VanishingGradientWarning
from photosieve.learn.head import MLPHead
from photosieve.learn.metrics import average_precision, review_rate_at_recall
from photosieve.learn.train import load_split_arrays
from photosieve.records import Split

RESULTS = Path(__file__).parent / "results"
DEPTH, WIDTH = 8, 256


def run(activation: str, data: Any, *, epochs: int, seed: int) -> dict[str, Any]:
    train, val = data.rows(Split.TRAIN), data.rows(Split.VALIDATION)
    head = MLPHead(
        (WIDTH,) * DEPTH, activation, 0.0, epochs=epochs, patience=epochs, seed=seed, lr=1e-3
    )
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", VanishingGradientWarning)
        head.fit(data.X[train], data.y[train], X_val=data.X[val], y_val=data.y[val])
    scores = head.score(data.X[val])
    health = head.gradient_health_
    return {
        "activation": activation,
        "seconds": time.perf_counter() - started,
        "grad_norm_per_layer_first_epoch": health["first_epoch"],
        "grad_norm_per_layer_mean": health["per_layer"],
        "first_to_last_layer_ratio": health["first_to_last"],
        "vanishing_warning": any(w.category is VanishingGradientWarning for w in caught),
        "best_epoch": head.best_epoch_,
        "validation_review_rate_at_99_recall": review_rate_at_recall(scores, data.y[val]),
        "validation_average_precision": average_precision(scores, data.y[val]),
        "val_review_rate_per_epoch": [r["val_review_rate"] for r in head.history_],
        "val_ap_per_epoch": [r["val_ap"] for r in head.history_],
        "train_loss_per_epoch": [r["loss"] for r in head.history_],
    }


def plot(results: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(16, 4))
    for name, res in results.items():
        norms = res["grad_norm_per_layer_first_epoch"]
        left.semilogy(range(1, len(norms) + 1), norms, marker="o", label=name)
        epochs = range(1, len(res["train_loss_per_epoch"]) + 1)
        middle.semilogy(epochs, res["train_loss_per_epoch"], label=name)
        right.plot(
            epochs,
            res["val_ap_per_epoch"],
            label=f"{name} (best AP {max(res['val_ap_per_epoch']):.3f})",
        )
    left.set_xlabel("linear layer (1 = input side, 9 = output)")
    left.set_ylabel("mean weight-gradient L2 norm, epoch 1")
    left.set_title(f"Gradient norm per layer, {DEPTH} hidden layers × {WIDTH}")
    middle.set_xlabel("epoch")
    middle.set_ylabel("training loss (weighted BCE)")
    middle.set_title("Training loss")
    right.set_xlabel("epoch")
    right.set_ylabel("validation average precision")
    right.set_title("Learning on the bench embeddings")
    for ax in (left, middle, right):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", type=Path, default=Path("work/data/split.csv"))
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not args.split.is_file():
        raise SystemExit(f"{args.split} not found: run `photosieve ingest` and `photosieve split`")
    data = load_split_arrays(args.split, workdir=args.workdir)
    results = {a: run(a, data, epochs=args.epochs, seed=args.seed) for a in ("sigmoid", "relu")}
    RESULTS.mkdir(parents=True, exist_ok=True)
    summary = {
        "split": str(args.split),
        "depth": DEPTH,
        "width": WIDTH,
        "epochs": args.epochs,
        "relu_vs_sigmoid_first_layer_grad_ratio": (
            results["relu"]["grad_norm_per_layer_first_epoch"][0]
            / results["sigmoid"]["grad_norm_per_layer_first_epoch"][0]
        ),
        "results": results,
    }
    (RESULTS / "activations.json").write_text(json.dumps(summary, indent=2))
    plot(results, RESULTS / "activations.png")
    for name, res in results.items():
        print(
            f"{name:8s} first/last grad ratio {res['first_to_last_layer_ratio']:.2e}  "
            f"val review@99% {res['validation_review_rate_at_99_recall']:.3f}  "
            f"val AP {res['validation_average_precision']:.4f}  warning {res['vanishing_warning']}"
        )


if __name__ == "__main__":
    main()
