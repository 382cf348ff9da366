"""Earlier layers' pooled features next to the final map's, at no extra serving cost (issue 11)
→ results/level_workload.json.

The served embedding pools Lite1's final 1,280-channel map (8 × 8 at 240 px) by average and
max. The same forward pass also computes finer maps the pooling throws away: stage 5's output
(112 channels at stride 16, 15 × 15), stage 6's (192, stride 32) and stage 7's (320, the head
convolution's input). Pooling those too (average and max: a "hypercolumn" summary) costs a few
reductions, no backbone pass; so does a generalised-mean pool of the final map (GeM, p = 3,
between average and max). Do they help the head rank the hardest positives?

One bench-only graph (`efficientnet_lite1_levels`, the product's weights) computes every block
at once, for each photo and its mirror image (the product's training view, `train_mirror`); its
first 2,560 columns are the served embedding (checked against the product's cache). Each recipe
is the served columns plus some blocks, the head trained on photos + mirror images as the
product does (`view_workload.py`'s `flip`), same folds, plan, draws as `view_workload.py`, one
head seed (`--seeds`: seed 1 too; `--mlp5 NAME…`: the product's 5-seed head), chosen on
validation.

    PYTHONPATH=src python bench/level_workload.py --workdir /tmp/runs/lite1 --draws 1000 --seeds
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from oof_scores import Extras, Recipe, load_bench
from photosieve.vision.backbone import (
    STAGES,
    BackboneConfig,
    EfficientNetLite,
    backbone_config,
    load_pretrained,
    register_backbone,
)
from photosieve.vision.backbone import lite1_weights_path as _lite1_weights
from photosieve.vision.embed import embed_files
from recipe_runs import add_recipe_arguments, recipes_table, score_and_report

RESULTS = Path(__file__).parent / "results" / "level_workload.json"
LITE1 = "efficientnet_lite1_avgmax"
LEVELS = "efficientnet_lite1_levels"
GEM_P = 3.0
# Block name → width, in the graph's column order (after the served 2,560 columns).
STAGE_OUT = {"s5": 4, "s6": 5, "s7": 6}  # stage index (0-based) whose output is pooled
SERVED = 2560


def _stage_ends(variant: str) -> dict[int, str]:
    """Index of the last block of each pooled stage → block name."""
    ends, total = {}, 0
    for stage, (repeats, *_rest) in enumerate(STAGES[variant]):
        total += repeats
        for name, s in STAGE_OUT.items():
            if s == stage:
                ends[total - 1] = name
    return ends


def _widths(variant: str) -> dict[str, int]:
    out = {"gem": 1280}
    for name, s in STAGE_OUT.items():
        out[name] = 2 * STAGES[variant][s][4]
    return out


BLOCK_WIDTHS = _widths("lite1")


class LevelsLite1(EfficientNetLite):
    """Lite1 whose embedding is [avg, max of the final map, GeM of it, avg+max of stages 5–7]."""

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        ends = _stage_ends("lite1")
        pooled: dict[str, torch.Tensor] = {}
        x = self.act(self._bn0(self._conv_stem(x)))
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in ends:
                pooled[ends[i]] = torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)
        fmap = self.act(self._bn1(self._conv_head(x)))
        gem = fmap.clamp(min=1e-6).pow(GEM_P).mean(dim=(2, 3)).pow(1.0 / GEM_P)
        served = torch.cat([fmap.mean(dim=(2, 3)), fmap.amax(dim=(2, 3))], dim=1)
        return torch.cat([served, gem] + [pooled[n] for n in STAGE_OUT], dim=1)


def _levels_config() -> BackboneConfig:
    base = backbone_config(LITE1)
    return replace(
        base, name=LEVELS, id=f"{base.id}-levels1", embed_dim=SERVED + sum(BLOCK_WIDTHS.values())
    )


def _create_levels(pretrained: bool) -> EfficientNetLite:
    net = LevelsLite1(backbone_config(LITE1), pooling="avgmax", variant="lite1", padding="same")
    model = load_pretrained(net, pretrained, _lite1_weights)
    model.config = _levels_config()
    return model


def level_blocks(X: np.ndarray) -> dict[str, np.ndarray]:
    """The levels graph's columns cut into its named blocks (`served` first)."""
    out, start = {"served": X[:, :SERVED]}, SERVED
    for name, width in BLOCK_WIDTHS.items():
        out[name] = X[:, start : start + width]
        start += width
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_recipe_arguments(parser)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--sets", nargs="+", default=["s5", "s567", "gem"],
        help="block sets added to the served columns: s5, s6, s7, s567, gem, all",
    )  # fmt: skip
    parser.add_argument("--mlp5", nargs="*", default=[], help="sets also run with the 5-seed head")
    parser.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args(argv)
    if args.table:
        print(recipes_table(json.loads(args.out.read_text())))
        return 0
    register_backbone(LEVELS, _levels_config, _create_levels)
    results: dict[str, Any] = {"machine": platform.node(), "draws": args.draws}
    bench = load_bench(args.workdir / "data" / "ingested.csv", args.workdir, [LITE1])
    paths = [Path(p) for p in bench.frame["path"]]
    plain = embed_files(paths, workdir=args.workdir, backbone=LEVELS)
    mirror = embed_files(paths, workdir=args.workdir, backbone=LEVELS, mirror=True)
    gap = float(np.abs(plain[:, :SERVED] - bench.features[LITE1]).max())
    results["served_columns_max_abs_diff"] = gap
    print(f"levels graph vs the served embedding: max |diff| {gap:.2e}", flush=True)
    blocks, mirror_blocks = level_blocks(plain), level_blocks(mirror)
    sets = {
        "s5": ("s5",), "s6": ("s6",), "s7": ("s7",), "s567": ("s5", "s6", "s7"),
        "gem": ("gem",), "all": ("gem", "s5", "s6", "s7"),
    }  # fmt: skip
    for name in BLOCK_WIDTHS:
        bench.features[f"levels_{name}"] = blocks[name]
    results["block_widths"] = BLOCK_WIDTHS

    def flip_extras(chosen: tuple[str, ...], tag: str) -> Extras:
        X = np.concatenate([mirror_blocks["served"]] + [mirror_blocks[b] for b in chosen], axis=1)
        rows = np.arange(len(bench.frame))
        return Extras(score={}, train=(X, bench.y.copy(), rows), tag=f"levels-flip-{tag}")

    recipes: list[Recipe] = []
    extras: dict[str, Extras] = {}

    def add(name: str, chosen: tuple[str, ...], head: str) -> None:
        recipes.append(Recipe(name, (LITE1, *(f"levels_{b}" for b in chosen)), head))
        extras[name] = flip_extras(chosen, "-".join(chosen) or "served")

    one: list[tuple[str, tuple[str, ...]]] = [("lite1_mlp1_flip", ())] if args.baseline else []
    one += [(f"lite1_{s}_mlp1_flip", sets[s]) for s in args.sets]
    for name, chosen in one:
        add(name, chosen, "mlp1")
    if args.seeds:
        for name, chosen in one:
            add(f"{name}s1", chosen, "mlp1s1")
    five: list[tuple[str, tuple[str, ...]]] = [(f"lite1_{s}_mlp5_flip", sets[s]) for s in args.mlp5]
    if args.baseline and args.mlp5:
        five.insert(0, ("lite1_mlp5_flip", ()))
    for name, chosen in five:
        add(name, chosen, "mlp5")
    score_and_report(bench, recipes, results, args, extras=extras)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
