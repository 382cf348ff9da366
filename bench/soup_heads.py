"""The tuned soup's head, out of fold: the classifier tuned with it vs the product's heads.

`gpu_soup.py` scored each fold's soup with the classifier averaged with it ("tuned"). A tuned
bundle may instead carry the product's 5-seed MLP fitted afresh on the tuned embeddings
("refit"), or the mean logit of the two ("both", `TrainConfig.finetune_head`'s default, chosen on
one tuning split with single runs). Here each fold's soup (BatchNorm re-measured, exported to
ONNX, the served path) embeds every primary photo's original; the product head is fitted on the
fold's training rows with early stopping on its validation rows — both of which the soup was
tuned on (recipe C), so the stopping point is chosen in-sample — and scores the fold's held-out
rows. The three heads go through `certified_workload.py`'s 1,000 draws → `results/soup_heads.json`.

    PYTHONPATH=src python bench/soup_heads.py --device-out DIR --ingested work/data/ingested.csv
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))

from certified_workload import _origin, plan_sizes
from gpu_finetune import L0, certify_runs, table
from oof_scores import _fit_fold, fold_of, fold_parts, load_bench
from photosieve.data.plan import plan_by_workload
from photosieve.learn.finetune import TunedLite0, export_tuned_onnx
from photosieve.learn.pixel_finetune import load_half_state
from photosieve.vision.preprocess import load_for_model
from photosieve.vision.runtime import INPUT_NAME, create_session

RESULTS = Path(__file__).parent / "results" / "soup_heads.json"


def soup_model(path: Path, backbone: str) -> TunedLite0:
    """A fold's soup as `gpu_soup.py` returned it (tuned from `backbone`), BatchNorm re-measured."""
    saved = torch.load(path, weights_only=True)
    return load_half_state(TunedLite0(backbone=backbone), saved["state"] | saved["bn_reset"])


def embed_all(model: TunedLite0, paths: np.ndarray, tmp: Path) -> np.ndarray:
    """(N, 2560) embeddings of the original photos through the exported ONNX graph."""
    session = create_session(export_tuned_onnx(model, tmp / "soup.onnx"))
    cfg = model.backbone.config.preprocess
    out = []
    with ThreadPoolExecutor(2) as pool:
        for start in range(0, len(paths), 256):
            batch = list(pool.map(lambda p: load_for_model(p, cfg), paths[start : start + 256]))
            out.append(session.run(None, {INPUT_NAME: np.stack(batch)})[0])
    return np.concatenate(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device-out", type=Path, required=True)
    parser.add_argument("--pack", type=Path, default=Path(".gpu"))
    parser.add_argument("--ingested", type=Path, default=Path("work/data/ingested.csv"))
    parser.add_argument("--draws", type=int, default=1000)
    args = parser.parse_args()
    index = np.load(args.pack / "index.npz")
    workdir = args.ingested.parent.parent
    bench = load_bench(args.ingested, workdir, [L0], primary_only=[L0])
    rows, n_folds = index["rows"], int(index["train"].shape[1])
    folds = fold_of(bench, n_folds, 0)
    if not (folds[rows] == index["fold"]).all():
        raise SystemExit("the pack's folds are not this bench's")
    plan = plan_by_workload(int(bench.y[bench.primary].sum()))[0]
    sizes = plan_sizes(bench, plan, seed=0)
    y, origin = bench.y[rows], _origin(bench.frame["origin"].to_numpy()[rows])
    paths = bench.frame["path"].to_numpy()[rows]
    cache = workdir / "gpu_soup"
    cache.mkdir(parents=True, exist_ok=True)
    logit = {h: np.full(len(rows), np.nan) for h in ("tuned", "refit")}
    log = json.loads((args.device_out / "device_log.json").read_text())
    tuned_from = log["recipe"].get("backbone", L0)
    for f in range(n_folds):
        model = soup_model(args.device_out / f"soup_fold{f}.pt", tuned_from)
        file = cache / f"soup_fold{f}_{tuned_from}_embeddings.npy"
        if not file.is_file():
            with tempfile.TemporaryDirectory() as tmp:
                np.save(file, embed_all(model, paths, Path(tmp)))
        X = np.load(file)
        tr, va = (m[rows] for m in fold_parts(bench, folds, f, plan, 0, external=False))
        te = index["fold"] == f
        with torch.no_grad():
            logit["tuned"][te] = model.classifier(torch.from_numpy(X[te]))[:, 0].numpy()
        scores, _ = _fit_fold((X[tr], y[tr], X[va], y[va], X[te], "mlp5"))
        p = np.clip(scores, 1e-7, 1 - 1e-7)
        logit["refit"][te] = np.log(p) - np.log1p(-p)
        print(f"fold {f}: {tr.sum()} training, {va.sum()} validation, {te.sum()} held out",
              flush=True)  # fmt: skip
    logit["both"] = (logit["tuned"] + logit["refit"]) / 2
    scores = {f"soup of seeds 0–2, head {head} (originals, served path)":
              (1 / (1 + np.exp(-z)), {}) for head, z in logit.items()}  # fmt: skip
    results = {"draws": args.draws, "sizes": sizes} | certify_runs(
        scores, y, origin, sizes, args.draws
    )
    RESULTS.write_text(json.dumps(results, indent=2))
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
